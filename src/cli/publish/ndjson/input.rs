//! The input, read twice: a regular file from its start again, anything else (stdin, a
//! pipe) through a spool file that pass 1 fills; and the line reader both passes use.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::PathBuf;
use std::time::SystemTime;

use super::READ_BUFFER;
use crate::cli::Failure;

/// The input, read twice: a regular file from its start again, anything else through a
/// spool that pass 1 fills.
pub(super) struct Input {
    /// For messages: the path, or `-` (stdin).
    pub(super) name: String,
    /// What pass 1 reads.
    pub(super) first: Box<dyn Read>,
    /// The file pass 2 reads: the input itself, or the spool.
    pub(super) again: File,
    pub(super) spooled: Option<Spool>,
    /// The input file's size and modification time when opened: pass 2 refuses a file that
    /// changed while it was being checked.
    pub(super) stamp: Option<(u64, Option<SystemTime>)>,
}

impl Input {
    pub(super) fn open(source: &str) -> Result<Input, Failure> {
        if source == "-" {
            let spool = Spool::create()?;
            return Ok(Input {
                name: source.into(),
                first: Box::new(std::io::stdin()),
                again: spool.file()?,
                spooled: Some(spool),
                stamp: None,
            });
        }
        let cannot = |e: std::io::Error| Failure::usage(format!("cannot read {source}: {e}"));
        let file = File::open(source).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        if !meta.is_file() {
            let spool = Spool::create()?;
            return Ok(Input {
                name: source.into(),
                first: Box::new(file),
                again: spool.file()?,
                spooled: Some(spool),
                stamp: None,
            });
        }
        Ok(Input {
            name: source.into(),
            first: Box::new(file.try_clone().map_err(cannot)?),
            again: file,
            spooled: None,
            stamp: Some(stamp(&meta)),
        })
    }

    /// The reader for pass 2, at the start of the input.
    pub(super) fn rewind(self) -> Result<BufReader<File>, Failure> {
        let Input {
            name,
            mut again,
            stamp: before,
            spooled,
            ..
        } = self;
        let cannot = |e: std::io::Error| {
            Failure::runtime(format!(
                "cannot read {name} again: {e}; nothing was written"
            ))
        };
        if let Some(before) = before {
            let now = again.metadata().map(|m| stamp(&m)).map_err(cannot)?;
            if now != before {
                return Err(Failure::runtime(format!(
                    "{name} changed while it was being checked; nothing was written. Publish it again once nothing writes to it"
                )));
            }
        }
        again.rewind().map_err(cannot)?;
        drop(spooled);
        Ok(BufReader::with_capacity(READ_BUFFER, again))
    }
}

pub(super) fn stamp(meta: &std::fs::Metadata) -> (u64, Option<SystemTime>) {
    (meta.len(), meta.modified().ok())
}

/// Stdin's copy for pass 2, in the system temp dir. Unlinked right after it is created, so
/// it disappears when weir exits, however it exits; removed on drop where unlinking an open
/// file is not possible.
pub(super) struct Spool {
    file: File,
    /// Set while the file still has a name.
    path: Option<PathBuf>,
}

impl Spool {
    pub(super) fn create() -> Result<Spool, Failure> {
        let dir = std::env::temp_dir();
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let mut last = None;
        for attempt in 0..8 {
            let path = dir.join(format!(
                "weir-publish-{}-{nanos}-{attempt}.ndjson",
                std::process::id()
            ));
            let created = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path);
            match created {
                Ok(file) => {
                    let path = std::fs::remove_file(&path).err().map(|_| path);
                    return Ok(Spool { file, path });
                }
                Err(e) => last = Some(e),
            }
        }
        let e = last.map_or_else(|| "unknown error".to_string(), |e| e.to_string());
        Err(Failure::runtime(format!(
            "cannot create a spool file for the input in {}: {e}; NDJSON from a pipe is copied there to be read twice. Set TMPDIR to a writable directory, or pass a file",
            dir.display()
        )))
    }

    /// Another handle on the spool (pass 1 writes through one, pass 2 reads the other).
    pub(super) fn file(&self) -> Result<File, Failure> {
        self.file
            .try_clone()
            .map_err(|e| Failure::runtime(format!("cannot open the spool file: {e}")))
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Lines read into one reused buffer, numbered from 1.
pub(super) struct Lines<R> {
    pub(super) reader: R,
    pub(super) buf: Vec<u8>,
    /// The number of the line in `buf`.
    pub(super) n: usize,
}

impl<R: BufRead> Lines<R> {
    pub(super) fn new(reader: R) -> Lines<R> {
        Lines {
            reader,
            buf: Vec::with_capacity(4096),
            n: 0,
        }
    }

    /// The next line's number and text as read (newline included); `None` at the end.
    pub(super) fn next(&mut self) -> std::io::Result<Option<(usize, &[u8])>> {
        self.buf.clear();
        if self.reader.read_until(b'\n', &mut self.buf)? == 0 {
            return Ok(None);
        }
        self.n += 1;
        Ok(Some((self.n, &self.buf)))
    }
}

/// A line's content without surrounding whitespace; `None` for a blank line (skipped).
pub(super) fn content(line: &[u8]) -> Option<&[u8]> {
    let text = line.trim_ascii();
    (!text.is_empty()).then_some(text)
}
