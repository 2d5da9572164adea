//! Stdout and file output, on a thread of their own: their I/O blocks.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{Line, Report, Source, more};
use crate::state::Backoff;

/// Records per write (and per fsync).
const MAX_BATCH: usize = 1024;

/// A regular file is synced at most this often (group commit): one
/// `fdatasync` per record cost more CPU than everything else the writer
/// does. At low load a record is still synced at once.
const SYNC_EVERY: Duration = Duration::from_millis(10);

pub(crate) enum Output {
    Stdout,
    File(RotatingFile),
}

/// How far a batch got, so a retry resumes where a failed write stopped
/// (even inside a line) instead of writing part of a line twice.
#[derive(Default)]
struct Cursor {
    line: usize,
    offset: usize,
}

/// The writer thread's loop; ends when every sender is gone and the queue
/// is written.
pub(crate) fn run(mut rx: Source, report: Report, mut out: Output) {
    let mut last_sync = Instant::now()
        .checked_sub(SYNC_EVERY)
        .unwrap_or_else(Instant::now);
    while let Some(first) = rx.blocking_recv() {
        let batches = more(first, &mut rx, MAX_BATCH);
        let lines: Vec<&Line> = batches.iter().flat_map(|b| b.iter()).collect();
        let mut cursor = Cursor::default();
        let mut backoff = Backoff::new();
        loop {
            while let Err(e) = out.write(&lines, &mut cursor) {
                // An io::Error's text is the OS's, never the line's content.
                report.failed(&e.to_string());
                std::thread::sleep(backoff.next());
            }
            // Group commit: at most one sync per SYNC_EVERY. Records that
            // come meanwhile wait in the queue and make the next batch.
            let since = last_sync.elapsed();
            if since < SYNC_EVERY {
                std::thread::sleep(SYNC_EVERY - since);
            }
            let synced = out.sync();
            last_sync = Instant::now();
            match synced {
                Ok(()) => break,
                Err(e) => {
                    // After a failed sync the written lines may not be on
                    // disk: write the batch again. A line may then appear
                    // twice, with its `seq`, never be missing.
                    report.failed(&e.to_string());
                    std::thread::sleep(backoff.next());
                    cursor = Cursor::default();
                }
            }
        }
        // Places are freed only once their records are on disk.
        report.written(lines.len());
    }
}

impl Output {
    /// Makes what was written durable: a regular file's data is synced;
    /// stdout, a FIFO or a device have nothing to sync.
    fn sync(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout => Ok(()),
            Self::File(f) => {
                let r = f.sync();
                if r.is_err() {
                    f.file = None;
                }
                r
            }
        }
    }
}

impl Output {
    /// Writes `lines` from `cursor` on, then flushes (and for a regular
    /// file, syncs its data to disk).
    fn write(&mut self, lines: &[&Line], cursor: &mut Cursor) -> io::Result<()> {
        match self {
            Self::Stdout => {
                let mut out = io::stdout().lock();
                while let Some(&line) = lines.get(cursor.line) {
                    write_rest(&mut out, line, cursor)?;
                }
                out.flush()
            }
            Self::File(f) => {
                let r = f.write(lines, cursor);
                if r.is_err() {
                    // Reopened on the next attempt; the cursor says where
                    // to resume.
                    f.file = None;
                }
                r
            }
        }
    }
}

/// The rest of the cursor's line, advancing the cursor byte by byte
/// written; returns the bytes written.
fn write_rest(out: &mut impl Write, line: &Line, cursor: &mut Cursor) -> io::Result<usize> {
    let bytes = [line.json.as_bytes(), b"\n"];
    let len = bytes[0].len() + 1;
    let mut n = 0;
    while cursor.offset < len {
        let rest = if cursor.offset < bytes[0].len() {
            &bytes[0][cursor.offset..]
        } else {
            bytes[1]
        };
        match out.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(k) => {
                cursor.offset += k;
                n += k;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    cursor.line += 1;
    cursor.offset = 0;
    Ok(n)
}

/// The audit file, opened on first write (opening may block, e.g. on a
/// FIFO, so it is done on the writer thread) and rotated by size.
pub(crate) struct RotatingFile {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    file: Option<Open>,
}

struct Open {
    file: File,
    size: u64,
    /// Only a regular file is synced and rotated (not a FIFO or a device
    /// such as `/dev/stdout`).
    regular: bool,
}

impl RotatingFile {
    pub(crate) fn new(path: PathBuf, max_bytes: u64, max_files: u32) -> Self {
        Self {
            path,
            max_bytes,
            max_files,
            file: None,
        }
    }

    fn write(&mut self, lines: &[&Line], cursor: &mut Cursor) -> io::Result<()> {
        while let Some(&line) = lines.get(cursor.line) {
            if cursor.offset == 0 {
                self.make_room(line.json.len() as u64 + 1)?;
            }
            let f = self.open()?;
            let n = write_rest(&mut f.file, line, cursor)?;
            f.size += n as u64;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        match &self.file {
            Some(f) if f.regular => f.file.sync_data(),
            _ => Ok(()),
        }
    }

    fn open(&mut self) -> io::Result<&mut Open> {
        if self.file.is_none() {
            let file = open_append(&self.path)?;
            let meta = file.metadata()?;
            self.file = Some(Open {
                file,
                size: meta.len(),
                regular: meta.is_file(),
            });
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Rotates first if a line of `len` bytes would take a non-empty file
    /// past the limit (a longer line gets a file of its own).
    fn make_room(&mut self, len: u64) -> io::Result<()> {
        let max = self.max_bytes;
        let f = self.open()?;
        if !f.regular || f.size == 0 || f.size.saturating_add(len) <= max {
            return Ok(());
        }
        f.file.sync_data()?;
        self.file = None;
        // `path.N` is deleted, `path.i` becomes `path.i+1`, `path` becomes
        // `path.1`. Missing files are skipped, so a rotation that failed
        // half way can simply be tried again.
        let n = self.max_files;
        ignore_missing(std::fs::remove_file(numbered(&self.path, n)))?;
        for i in (1..n).rev() {
            ignore_missing(std::fs::rename(
                numbered(&self.path, i),
                numbered(&self.path, i + 1),
            ))?;
        }
        ignore_missing(std::fs::rename(&self.path, numbered(&self.path, 1)))?;
        self.open().map(drop)
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut opts = OpenOptions::new();
    opts.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    opts.open(path)
}

fn numbered(path: &Path, i: u32) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(format!(".{i}"));
    PathBuf::from(p)
}

fn ignore_missing(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(texts: &[&str]) -> Vec<Line> {
        texts
            .iter()
            .map(|t| Line {
                json: (*t).to_owned(),
                time: std::time::SystemTime::UNIX_EPOCH,
                outcome: "forwarded",
                transaction_id: None,
            })
            .collect()
    }

    /// Accepts `budget` bytes, then fails; a test double of a full disk.
    struct Full {
        budget: usize,
        got: Vec<u8>,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::StorageFull.into());
            }
            let n = buf.len().min(self.budget).min(3);
            self.budget -= n;
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_retry_resumes_inside_the_line_where_the_write_stopped() {
        let lines = lines(&["abcdefgh", "ij"]);
        let mut out = Full {
            budget: 5,
            got: Vec::new(),
        };
        let mut cursor = Cursor::default();
        assert!(write_rest(&mut out, &lines[0], &mut cursor).is_err());
        assert_eq!((cursor.line, cursor.offset), (0, 5));
        out.budget = 100;
        while let Some(line) = lines.get(cursor.line) {
            write_rest(&mut out, line, &mut cursor).unwrap();
        }
        assert_eq!(out.got, b"abcdefgh\nij\n");
    }

    #[test]
    fn rotation_keeps_max_files_and_gives_a_long_line_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = RotatingFile::new(path.clone(), 10, 2);
        let mut cursor = Cursor::default();
        let batch = lines(&["1234", "5678", "a-very-long-line", "x", "y", "0123456789"]);
        let batch: Vec<&Line> = batch.iter().collect();
        f.write(&batch, &mut cursor).unwrap();
        let read = |p: &Path| std::fs::read_to_string(p).unwrap();
        // Files: 1234 5678 | a-very-long-line | x y | 0123456789; the
        // first is deleted at the third rotation.
        assert_eq!(read(&path), "0123456789\n");
        assert_eq!(read(&numbered(&path, 1)), "x\ny\n");
        assert_eq!(read(&numbered(&path, 2)), "a-very-long-line\n");
        assert!(!numbered(&path, 3).exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
