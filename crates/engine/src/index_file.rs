//! The vector index's own file: every loaded space's chunks with the `vector_version` they
//! cover and the ANN key of each (the vectors are in the ANN graph, usearch's file beside it).
//!
//! Layout (little-endian): magic `MSVI`, format u32 (2; format 1 also held the vectors as f32),
//! space count u64; per space: id (16 bytes), version i64, dimension u32, row count u64, per
//! row: memory id (16), ordinal i32, ANN key u64; the file ends with an FNV-1a 64 checksum of
//! everything before it, so a torn or corrupt file is detected and rebuilt, never half-read.
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use anyhow::{bail, Context};
use uuid::Uuid;

const MAGIC: &[u8; 4] = b"MSVI";
const FORMAT: u32 = 2;

/// One space as saved.
#[derive(Debug, Default, PartialEq)]
pub struct SavedSpace {
    pub space_id: Uuid,
    pub version: i64,
    pub dim: u32,
    /// (memory, ordinal, ANN key or 0).
    pub rows: Vec<(Uuid, i32, u64)>,
}

struct Hashing<W> {
    inner: W,
    hash: u64,
}

fn fnv(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

const FNV_START: u64 = 0xcbf2_9ce4_8422_2325;

impl<W: Write> Hashing<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.hash = fnv(self.hash, bytes);
        self.inner.write_all(bytes)
    }
}

impl<R: Read> Hashing<R> {
    fn take<const N: usize>(&mut self) -> std::io::Result<[u8; N]> {
        let mut buf = [0u8; N];
        self.inner.read_exact(&mut buf)?;
        self.hash = fnv(self.hash, &buf);
        Ok(buf)
    }
}

/// Writes `spaces` to `path` atomically (a temporary file renamed over it after an fsync).
pub fn write(path: &Path, spaces: &[SavedSpace]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let file = std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
    let mut w = Hashing {
        inner: BufWriter::with_capacity(1 << 20, file),
        hash: FNV_START,
    };
    w.put(MAGIC)?;
    w.put(&FORMAT.to_le_bytes())?;
    w.put(&(spaces.len() as u64).to_le_bytes())?;
    for s in spaces {
        w.put(s.space_id.as_bytes())?;
        w.put(&s.version.to_le_bytes())?;
        w.put(&s.dim.to_le_bytes())?;
        w.put(&(s.rows.len() as u64).to_le_bytes())?;
        for (memory, ord, key) in &s.rows {
            w.put(memory.as_bytes())?;
            w.put(&ord.to_le_bytes())?;
            w.put(&key.to_le_bytes())?;
        }
    }
    let hash = w.hash;
    w.inner.write_all(&hash.to_le_bytes())?;
    let file = w.inner.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Reads a file written by [`write`]; any damage is an error.
pub fn read(path: &Path) -> anyhow::Result<Vec<SavedSpace>> {
    let file = std::fs::File::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut r = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: FNV_START,
    };
    if &r.take::<4>()? != MAGIC || u32::from_le_bytes(r.take()?) != FORMAT {
        bail!("not a vector index file of format {FORMAT}");
    }
    let count = u64::from_le_bytes(r.take()?);
    let mut spaces = Vec::new();
    for _ in 0..count {
        let space_id = Uuid::from_bytes(r.take()?);
        let version = i64::from_le_bytes(r.take()?);
        let dim = u32::from_le_bytes(r.take()?);
        let n = u64::from_le_bytes(r.take()?) as usize;
        if n > (1 << 34) || dim > 65_536 {
            bail!("implausible sizes: {n} rows of {dim}");
        }
        let mut rows = Vec::with_capacity(n);
        for _ in 0..n {
            rows.push((
                Uuid::from_bytes(r.take()?),
                i32::from_le_bytes(r.take()?),
                u64::from_le_bytes(r.take()?),
            ));
        }
        spaces.push(SavedSpace {
            space_id,
            version,
            dim,
            rows,
        });
    }
    let expected = r.hash;
    let mut tail = [0u8; 8];
    r.inner.read_exact(&mut tail)?;
    if u64::from_le_bytes(tail) != expected {
        bail!("checksum mismatch");
    }
    Ok(spaces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_index_reads_back_and_a_damaged_one_is_refused() {
        let dir = std::env::temp_dir().join(format!("msvi-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vectors.msvi");
        let spaces = vec![
            SavedSpace {
                space_id: Uuid::now_v7(),
                version: 7,
                dim: 2,
                rows: vec![(Uuid::now_v7(), 0, 1 << 40), (Uuid::now_v7(), 1, 0)],
            },
            SavedSpace::default(),
        ];
        write(&path, &spaces).unwrap();
        assert_eq!(read(&path).unwrap(), spaces);

        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        assert!(read(&path).is_err(), "flipped bit");
        std::fs::write(&path, &bytes[..mid]).unwrap();
        assert!(read(&path).is_err(), "torn file");
        std::fs::remove_dir_all(&dir).ok();
    }
}
