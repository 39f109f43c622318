//! `schema.graphql` must be exactly what `memspace export-schema` prints.
//! Run with `UPDATE_SCHEMA=1` to rewrite the file after a deliberate schema change.

#[test]
fn committed_schema_matches_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schema.graphql");
    let generated = memspace::schema::sdl();
    if std::env::var_os("UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema.graphql");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema.graphql is out of date: run `UPDATE_SCHEMA=1 cargo test --test schema` \
         (or `cargo run -- export-schema > schema.graphql`) and commit the result"
    );
}
