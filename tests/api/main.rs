//! Integration tests: each boots the real server on a random port against a fresh database
//! (SQLite by default; PostgreSQL when `TEST_DATABASE_URL` is set) and talks HTTP to it.
//! One binary with modules keeps link time down.
mod common;

mod abuse;
mod access_matrix;
mod access_property;
mod auth;
mod browser;
mod credentials;
mod embedders;
mod fuzz_deep;
mod hardening;
mod identity;
mod input_limits;
mod mcp;
mod memories;
mod pgvector;
mod quality;
mod realtime;
mod relay;
mod replicas;
mod response_shape;
mod search;
mod search_property;
mod sharing;
mod spaces;
mod transfer;
mod transport;
mod workspaces;
