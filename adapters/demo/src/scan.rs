//! `sitequest-demo keys scan`: finding keys committed to files, the spec's tip "never commit
//! keys to version control" as a check for pre-commit hooks and CI.

use std::fs;
use std::path::{Path, PathBuf};

use sitequest_auth::{ApiKey, KEY_LEN, KEY_PREFIX};

/// Files larger than this are skipped (and reported): keys live in source and configuration.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// One key found in a file. The key itself is kept only as the parsed, zeroized [`ApiKey`].
#[derive(Debug)]
pub struct Found {
    /// The file.
    pub path: PathBuf,
    /// The line, from 1.
    pub line: usize,
    /// The key.
    pub key: ApiKey,
}

/// What a scan found, and what it could not read.
#[derive(Debug, Default)]
pub struct Scan {
    /// The keys, in the order of the files and lines.
    pub found: Vec<Found>,
    /// Files and directories that could not be read, or were too large, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Scans `paths` (files, or directories walked recursively without following symbolic links,
/// skipping `.git`) for keys: `sq_live_` and 64 lowercase hex digits, not inside a longer word.
/// Binary files (a NUL byte in their first 8 KiB) are skipped.
#[must_use]
pub fn scan(paths: &[PathBuf]) -> Scan {
    let mut out = Scan::default();
    let mut pending: Vec<PathBuf> = paths.iter().rev().cloned().collect();
    while let Some(path) = pending.pop() {
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) => {
                out.skipped.push((path, e.to_string()));
                continue;
            }
        };
        if meta.is_dir() {
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            match fs::read_dir(&path) {
                Ok(entries) => {
                    let mut children: Vec<PathBuf> =
                        entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
                    children.sort();
                    pending.extend(children.into_iter().rev());
                }
                Err(e) => out.skipped.push((path, e.to_string())),
            }
        } else if meta.is_file() {
            if meta.len() > MAX_FILE_BYTES {
                out.skipped
                    .push((path, format!("larger than {MAX_FILE_BYTES} bytes")));
                continue;
            }
            match fs::read(&path) {
                Ok(bytes) => {
                    if bytes[..bytes.len().min(8192)].contains(&0) {
                        continue;
                    }
                    for (line, key) in find_keys(&bytes) {
                        out.found.push(Found {
                            path: path.clone(),
                            line,
                            key,
                        });
                    }
                }
                Err(e) => out.skipped.push((path, e.to_string())),
            }
        }
    }
    out
}

/// The keys in `text`, with their line numbers (from 1).
#[must_use]
pub fn find_keys(text: &[u8]) -> Vec<(usize, ApiKey)> {
    let prefix = KEY_PREFIX.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut found = Vec::new();
    let mut line = 1;
    let mut line_start = 0;
    let mut i = 0;
    while i + KEY_LEN <= text.len() {
        if text[i] == b'\n' {
            line += 1;
            line_start = i + 1;
            i += 1;
            continue;
        }
        let candidate = &text[i..i + KEY_LEN];
        let starts_word = i == line_start || !word(text[i - 1]);
        let ends_word = text.get(i + KEY_LEN).is_none_or(|&b| !word(b));
        if candidate.starts_with(prefix) && starts_word && ends_word {
            if let Ok(key) = ApiKey::parse_bytes(candidate) {
                found.push((line, key));
                i += KEY_LEN;
                continue;
            }
        }
        i += 1;
    }
    found
}

/// How a found key is shown: never whole.
#[must_use]
pub fn shown(key: &ApiKey) -> String {
    format!("{KEY_PREFIX}…{}", key.last4())
}

/// Whether `path` names something to scan (for the command's error message).
#[must_use]
pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "sq_live_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn keys_are_found_with_their_lines_and_near_misses_are_not() {
        let text = format!(
            "first line\nexport SQ_KEY={KEY}\n\"{KEY}\" and {KEY}\n\
             sq_live_{short}\nsq_live_{upper}\nx{KEY}\n{KEY}0\n",
            short = &KEY[8..71],
            upper = KEY[8..].to_uppercase(),
        );
        let found: Vec<usize> = find_keys(text.as_bytes()).iter().map(|(l, _)| *l).collect();
        assert_eq!(found, vec![2, 3, 3]);
        let (_, key) = &find_keys(KEY.as_bytes())[0];
        assert_eq!(shown(key), "sq_live_…eeff");
    }
}
