//! The identity file: created with mode 0600, loaded back as the same key, refused when others may read it.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use dtn_wg::{Identity, IdentityError};

fn scratch(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let d = std::env::temp_dir().join(format!("dtn-wg-{name}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn generated_on_first_start_then_loaded() {
    let dir = scratch("first-start");
    let path = dir.join("keys/identity");
    let first = Identity::load_or_generate(&path).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    let again = Identity::load_or_generate(&path).unwrap();
    assert_eq!(first.public(), again.public());
    assert_eq!(first.signing_key().to_bytes(), again.signing_key().to_bytes());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_key_file_others_can_read_is_refused() {
    let dir = scratch("perms");
    let path = dir.join("identity");
    Identity::generate().unwrap().store(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = Identity::load_or_generate(&path).unwrap_err();
    assert!(matches!(err, IdentityError::Permissions { mode: 0o644, .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("chmod 600") && msg.contains("mode 644"), "{msg}");
    // Nothing was overwritten: fixing the mode gives the key back.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    Identity::load(&path).unwrap();
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_corrupt_key_file_is_an_error_not_a_new_key() {
    let dir = scratch("corrupt");
    let path = dir.join("identity");
    fs::write(&path, "not a key\n").unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(Identity::load_or_generate(&path), Err(IdentityError::Format { .. })));
    assert_eq!(fs::read_to_string(&path).unwrap(), "not a key\n");
    fs::remove_dir_all(dir).unwrap();
}
