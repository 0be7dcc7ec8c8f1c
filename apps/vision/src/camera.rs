//! Camera names as directory names.
//!
//! A camera's name comes from the network and becomes a directory under the archive, so it must not be able to
//! name anything outside its own directory or one of the archive's own files.

/// Longest accepted name, in bytes; well under file systems' 255-byte limit for one path component.
pub const MAX_CAMERA_NAME: usize = 64;

/// Names the archive keeps for itself at its top level.
const RESERVED: [&str; 3] = ["events.jsonl", "index.html", "rejected"];

/// Why a camera name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("camera name {name:?} refused: {reason}")]
pub struct CameraNameError {
    /// The name as given.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Accepts `name` as a directory name, or says why not.
pub fn check_camera_name(name: &str) -> Result<(), CameraNameError> {
    let refuse = |reason| Err(CameraNameError { name: name.to_string(), reason });
    if name.is_empty() {
        return refuse("empty");
    }
    if name.len() > MAX_CAMERA_NAME {
        return refuse("too long");
    }
    // A leading dot covers "." and "..", hidden files, and the archive's temporary files.
    if name.starts_with('.') {
        return refuse("starts with '.'");
    }
    if name.contains("..") {
        return refuse("contains '..'");
    }
    if let Some(c) =
        name.chars().find(|&c| matches!(c, '/' | '\\' | ':' | '<' | '>' | '"' | '|' | '?' | '*') || c.is_control())
    {
        return refuse(match c {
            '/' | '\\' => "contains a path separator",
            // Not separators on Unix, but an archive copied to Windows must still open: there "c:x" names a
            // file on drive C and the others cannot be in file names at all.
            ':' | '<' | '>' | '"' | '|' | '?' | '*' => "contains a character Windows forbids in file names",
            _ => "contains a control character",
        });
    }
    if name.ends_with(' ') {
        // Windows drops trailing spaces, so two names would share a directory.
        return refuse("ends with a space");
    }
    if RESERVED.contains(&name) {
        return refuse("reserved by the archive");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_names_pass() {
        for ok in ["front-door", "garden_2", "Garten Süd", "cam.1"] {
            assert_eq!(check_camera_name(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn traversal_and_odd_names_are_refused() {
        let long = "x".repeat(MAX_CAMERA_NAME + 1);
        for bad in [
            "",
            ".",
            "..",
            "../etc",
            "a/../b",
            "a/b",
            "/abs",
            "a\\b",
            "c:x",
            "a?b",
            "a*",
            "<b>",
            "a\nb",
            "a\0b",
            "bell\u{7}",
            ".hidden",
            "a..b",
            "index.html",
            "rejected",
            "trailing ",
            &long,
        ] {
            assert!(check_camera_name(bad).is_err(), "{bad:?}");
        }
    }
}
