//! The admin API's bearer token: created once per data directory, read by the host and the CLI.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The token file's name inside the data directory.
pub const TOKEN_FILE: &str = "admin-token";

/// Random bytes in a new token (hex-encoded: twice as many characters).
const TOKEN_BYTES: usize = 32;

/// A token read from the file must be at least this long (16 bytes hex-encoded).
const MIN_TOKEN_CHARS: usize = 32;

/// Returns the token in `<data_dir>/admin-token`, creating it (and `data_dir`, mode 0700) on
/// first use with 32 random bytes hex-encoded, mode 0600. Concurrent first calls agree on one
/// token: the file appears complete or not at all.
pub fn load_or_create_token(data_dir: &Path) -> io::Result<String> {
    let file = data_dir.join(TOKEN_FILE);
    match std::fs::read_to_string(&file) {
        Ok(text) => return check_token(&file, &text),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(with_file(e, "cannot read the admin token file", &file)),
    }
    create_dir_private(data_dir)
        .map_err(|e| with_file(e, "cannot create the data directory", data_dir))?;
    let token = new_token()?;
    match publish(data_dir, &file, &token) {
        Ok(()) => Ok(token),
        // Another process created it between our read and our link: use theirs.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| with_file(e, "cannot read the admin token file", &file))?;
            check_token(&file, &text)
        }
        Err(e) => Err(with_file(e, "cannot create the admin token file", &file)),
    }
}

/// True if `authorization` is `Bearer <token>` (scheme case-insensitive). The token comparison
/// takes time that depends only on the lengths, never on where the first difference is. An
/// empty `token` accepts nothing.
pub fn bearer_ok(authorization: Option<&http::HeaderValue>, token: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let bytes = value.as_bytes();
    let Some((scheme, rest)) = split_at_checked(bytes, 6) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") || !rest.starts_with(b" ") {
        return false;
    }
    let presented = rest.trim_ascii();
    !token.is_empty() & constant_time_eq(presented, token.as_bytes())
}

fn split_at_checked(bytes: &[u8], mid: usize) -> Option<(&[u8], &[u8])> {
    (bytes.len() >= mid).then(|| bytes.split_at(mid))
}

/// Compares every byte of `expected` (and the lengths) without an early exit.
fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = (presented.len() ^ expected.len()) as u64;
    for (i, &e) in expected.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(!e);
        diff |= u64::from(p ^ e);
    }
    std::hint::black_box(diff) == 0
}

fn new_token() -> io::Result<String> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).map_err(|e| {
        io::Error::other(format!("cannot get random bytes for the admin token: {e}"))
    })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn check_token(file: &Path, text: &str) -> io::Result<String> {
    let token = text.trim();
    let fix = "delete it and `weft up` creates a new one";
    if token.len() < MIN_TOKEN_CHARS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the admin token file {} is empty or too short (a token has at least \
                 {MIN_TOKEN_CHARS} characters): {fix}",
                file.display()
            ),
        ));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the admin token file {} holds characters other than printable ASCII \
                 without spaces: {fix}",
                file.display()
            ),
        ));
    }
    Ok(token.to_string())
}

/// Writes the token to a private temporary file, then hard-links it into place, which fails with
/// `AlreadyExists` rather than replacing a token another process published first.
fn publish(data_dir: &Path, file: &Path, token: &str) -> io::Result<()> {
    let tmp = data_dir.join(format!(
        ".{TOKEN_FILE}.{}.{}.tmp",
        std::process::id(),
        &new_token()?[..8]
    ));
    let result = write_private(&tmp, token).and_then(|()| std::fs::hard_link(&tmp, file));
    let _ = std::fs::remove_file(&tmp);
    result
}

fn write_private(path: &Path, token: &str) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options.open(path)?;
    f.write_all(token.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

fn create_dir_private(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

fn with_file(e: io::Error, what: &str, path: &Path) -> io::Error {
    let path: PathBuf = path.to_path_buf();
    io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn tmp() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("tempdir: {e}"),
        }
    }

    #[test]
    fn creates_once_then_reads_the_same_token() -> io::Result<()> {
        let dir = tmp();
        let data = dir.path().join("a/b/data");
        let token = load_or_create_token(&data)?;
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(load_or_create_token(&data)?, token);
        let other = load_or_create_token(&dir.path().join("other"))?;
        assert_ne!(other, token);
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(&data)?
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .collect();
        assert_eq!(names, [TOKEN_FILE]);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn file_is_0600_and_new_dir_0700() -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp();
        let data = dir.path().join("data");
        load_or_create_token(&data)?;
        let mode = |p: &Path| std::fs::metadata(p).map(|m| m.permissions().mode() & 0o777);
        assert_eq!(mode(&data)?, 0o700);
        assert_eq!(mode(&data.join(TOKEN_FILE))?, 0o600);
        Ok(())
    }

    #[test]
    fn reads_a_hand_written_token_trimmed() -> io::Result<()> {
        let dir = tmp();
        let t = "0123456789abcdef0123456789abcdefXYZ";
        std::fs::write(dir.path().join(TOKEN_FILE), format!("  {t}\n\n"))?;
        assert_eq!(load_or_create_token(dir.path())?, t);
        Ok(())
    }

    #[test]
    fn empty_or_short_or_odd_file_is_an_error_naming_file_and_fix() -> io::Result<()> {
        let dir = tmp();
        let file = dir.path().join(TOKEN_FILE);
        for bad in ["", "\n", "short", "0123456789abcdef 0123456789abcdef"] {
            std::fs::write(&file, bad)?;
            let err = match load_or_create_token(dir.path()) {
                Err(e) => e,
                Ok(t) => panic!("accepted {bad:?} as {t:?}"),
            };
            let msg = err.to_string();
            assert!(msg.contains(&file.display().to_string()), "{msg}");
            assert!(msg.contains("delete it"), "{msg}");
        }
        Ok(())
    }

    #[test]
    fn concurrent_first_calls_agree() -> io::Result<()> {
        let dir = tmp();
        let data = dir.path().join("data");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let data = data.clone();
                std::thread::spawn(move || load_or_create_token(&data))
            })
            .collect();
        let mut tokens = Vec::new();
        for h in handles {
            match h.join() {
                Ok(t) => tokens.push(t?),
                Err(_) => panic!("thread panicked"),
            }
        }
        assert!(tokens.windows(2).all(|w| w[0] == w[1]), "{tokens:?}");
        Ok(())
    }

    #[test]
    fn bearer_checks() {
        let token = "s3cr3t-token";
        let ok = |v: &str| {
            bearer_ok(
                Some(&HeaderValue::from_str(v).unwrap_or_else(|_| HeaderValue::from_static("x"))),
                token,
            )
        };
        assert!(ok("Bearer s3cr3t-token"));
        assert!(ok("bearer s3cr3t-token"));
        assert!(ok("BEARER   s3cr3t-token  "));
        assert!(!ok("Bearer s3cr3t-tokeN"));
        assert!(!ok("Bearer s3cr3t-toke"));
        assert!(!ok("Bearer s3cr3t-token2"));
        assert!(!ok("Bearer"));
        assert!(!ok("Bearer "));
        assert!(!ok("Bearers3cr3t-token"));
        assert!(!ok("Basic s3cr3t-token"));
        assert!(!ok("s3cr3t-token"));
        assert!(!ok(""));
        assert!(!bearer_ok(None, token));
        assert!(!bearer_ok(Some(&HeaderValue::from_static("Bearer ")), ""));
        let opaque = HeaderValue::from_bytes(b"Bearer \xff\xfe").ok();
        assert!(!bearer_ok(opaque.as_ref(), token));
    }

    #[test]
    fn constant_time_eq_agrees_with_eq() {
        let cases: [(&[u8], &[u8]); 6] = [
            (b"", b""),
            (b"a", b"a"),
            (b"a", b"b"),
            (b"ab", b"a"),
            (b"a", b"ab"),
            (b"\x00", b"\xff"),
        ];
        for (a, b) in cases {
            assert_eq!(constant_time_eq(a, b), a == b, "{a:?} {b:?}");
        }
    }
}
