//! The files the config shell reads and writes besides the config itself: the config file
//! (size- and UTF-8-checked), the generated token `<data_dir>/token` and the generated
//! acknowledge-link key `<data_dir>/link.key`, both private (0600) and reused after restarts.

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{ConfigErrors, MAX_CONFIG_BYTES, Secret};

/// The file under `data_dir` holding the generated token when the environment has none.
pub(crate) const TOKEN_FILE: &str = "token";

/// The file under `data_dir` holding the generated link key when no secret is configured.
pub const LINK_KEY_FILE: &str = "link.key";

pub(crate) fn read_config_file(path: &Path) -> Result<String, ConfigErrors> {
    let file = path.display().to_string();
    let fail = |what: &str, e: std::io::Error| ConfigErrors::one(&file, format!("{what}: {e}"));
    let handle = std::fs::File::open(path).map_err(|e| fail("cannot open config file", e))?;
    let mut bytes = Vec::new();
    handle
        .take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail("cannot read config file", e))?;
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(ConfigErrors::one(
            &file,
            format!("config file is larger than {MAX_CONFIG_BYTES} bytes"),
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        ConfigErrors::one(
            &file,
            format!("config file is not UTF-8 (byte {})", e.utf8_error().valid_up_to()),
        )
    })
}

pub(crate) fn random_token() -> Result<String, String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("cannot generate a random token: {e}"))?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// The generated acknowledge-link key: `<data_dir>/link.key`, created (0600) with 32 random
/// bytes on first use and reused after restarts, exactly like the generated token.
pub fn read_or_create_link_key(data_dir: &Path) -> Result<Secret, ConfigErrors> {
    read_or_create_token(&data_dir.join(LINK_KEY_FILE)).map(Secret::new)
}

/// A random in-memory secret (for `tocsin check`, which writes nothing).
pub fn random_secret() -> Result<Secret, String> {
    random_token().map(Secret::new)
}

/// Reuses `path` if it exists, else creates it with a new token. The file must be private
/// (no group or other bits), like an ssh key: it holds the admin credential.
pub(crate) fn read_or_create_token(path: &Path) -> Result<String, ConfigErrors> {
    let file = path.display().to_string();
    let fail = |message: String| ConfigErrors::one(&file, message);
    match std::fs::File::open(path) {
        Ok(handle) => read_token_file(handle, path).map_err(fail),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                // 0700 applies only to directories created here; an existing data_dir keeps
                // the mode its owner chose.
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .map_err(|e| fail(format!("cannot create data directory: {e}")))?;
            }
            let token = random_token().map_err(fail)?;
            // create_new: never overwrite a token another process just wrote, and never follow
            // a symlink planted at this path.
            let created =
                std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
            match created {
                Ok(mut handle) => {
                    handle
                        .write_all(format!("{token}\n").as_bytes())
                        .and_then(|()| handle.sync_all())
                        .map_err(|e| fail(format!("cannot write token file: {e}")))?;
                    Ok(token)
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let handle = std::fs::File::open(path)
                        .map_err(|e| fail(format!("cannot open token file: {e}")))?;
                    read_token_file(handle, path).map_err(fail)
                }
                Err(e) => Err(fail(format!("cannot create token file: {e}"))),
            }
        }
        Err(e) => Err(fail(format!("cannot open token file: {e}"))),
    }
}

fn read_token_file(handle: std::fs::File, path: &Path) -> Result<String, String> {
    let mode =
        handle.metadata().map_err(|e| format!("cannot read token file: {e}"))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "token file is readable by other users (mode {:o}); run `chmod 600 {}`",
            mode & 0o777,
            path.display()
        ));
    }
    let mut text = String::new();
    handle
        .take(4096)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read token file: {e}"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err("token file is empty; delete it to have a new token generated".to_string());
    }
    Ok(token.to_string())
}
