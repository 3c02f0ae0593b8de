//! Sync files' keys and format (issue #21, "By file"): `careledger sync keys` makes a server's
//! keys once and writes its public key file; a file sealed for a server is a standard age file,
//! which the `age` tool (Debian's, installed by tests/run) opens with that server's identity, and
//! which careledger refuses when it is changed, sent by an unknown key or meant for another server.

use std::path::Path;
use std::process::Command;

use careledger_sync::{Keys, PeerKey, SyncFileError, open, seal};
use careledger_tests::careledger_binary;
use serde_json::Value;

fn sync_keys(data_dir: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(careledger_binary())
        .args(["sync", "keys", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_remove("CARELEDGER_FHIR_SYSTEM")
        .output()
        .expect("run careledger sync keys (build it with `cargo build --workspace --bins`)")
}

fn secret_keys(data_dir: &Path) -> Keys {
    Keys::from_secret_file(&std::fs::read_to_string(data_dir.join("sync-key.json")).unwrap()).unwrap()
}

#[test]
fn keys_are_made_once_and_files_open_with_the_age_tool_too() {
    let dir = std::env::temp_dir().join(format!("careledger-sync-{}", uuid::Uuid::now_v7()));
    let (node_dir, central_dir) = (dir.join("node"), dir.join("central"));
    std::fs::create_dir_all(&dir).unwrap();

    // the node's keys, made once: the same public file every time, the secret one private
    let node_pub = dir.join("node.pub.json");
    for _ in 0..2 {
        let made = sync_keys(&node_dir, &["--out", node_pub.to_str().unwrap()]);
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    }
    let first = std::fs::read_to_string(&node_pub).unwrap();
    let again = sync_keys(&node_dir, &[]);
    assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), first.trim(), "the same keys, written to stdout");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(node_dir.join("sync-key.json")).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the secret key file is its owner's alone: {mode:o}");
    let node_system = format!("urn:uuid:{}", std::fs::read_to_string(node_dir.join("server-id")).unwrap().trim());
    let node_public = PeerKey::from_file(&first).unwrap();
    assert_eq!(node_public.server, node_system);
    // keys made for one system are not silently used for another
    let other = sync_keys(&node_dir, &["--fhir-system", "https://node.example.org/ids"]);
    assert!(!other.status.success());
    assert!(String::from_utf8_lossy(&other.stderr).contains("holds the sync keys of"), "{other:?}");

    // central's keys, under a configured system
    let central_made = sync_keys(&central_dir, &["--fhir-system", "https://central.example.org/ids"]);
    assert!(central_made.status.success(), "{}", String::from_utf8_lossy(&central_made.stderr));
    let central_public = PeerKey::from_file(&String::from_utf8_lossy(&central_made.stdout)).unwrap();
    assert_eq!(central_public.server, "https://central.example.org/ids");

    // the node seals a Bundle for central
    let (node, central) = (secret_keys(&node_dir), secret_keys(&central_dir));
    let bundle = br#"{"resourceType":"Bundle","type":"transaction","entry":[]}"#;
    let file = seal(bundle, &node, &central_public).unwrap();
    let opened = open(&file, &central, std::slice::from_ref(&node_public)).unwrap();
    assert_eq!((opened.from.as_str(), opened.payload.as_slice()), (node_system.as_str(), &bundle[..]));

    // the age tool opens it with central's identity: a standard age file, holding the signed envelope
    let secret: Value =
        serde_json::from_str(&std::fs::read_to_string(central_dir.join("sync-key.json")).unwrap()).unwrap();
    let identity = dir.join("central.age-identity");
    std::fs::write(&identity, secret["age_identity"].as_str().unwrap()).unwrap();
    let sealed = dir.join("bundle.sync");
    std::fs::write(&sealed, &file).unwrap();
    let decrypted = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&identity)
        .arg(&sealed)
        .output()
        .expect("run age (Debian's `age`, which tests/run installs)");
    assert!(decrypted.status.success(), "{}", String::from_utf8_lossy(&decrypted.stderr));
    let envelope: Value = serde_json::from_slice(&decrypted.stdout).unwrap();
    let header: Value = serde_json::from_str(envelope["header"].as_str().unwrap()).unwrap();
    assert_eq!(header["from"], node_system.as_str());
    assert_eq!(header["to"], "https://central.example.org/ids");

    // what the age tool encrypts to central without the node's signature is refused
    let unsigned = Command::new("age")
        .args(["-r", &central_public.age_recipient(), "-o"])
        .arg(dir.join("unsigned.sync"))
        .arg(dir.join("node.pub.json"))
        .output()
        .unwrap();
    assert!(unsigned.status.success(), "{}", String::from_utf8_lossy(&unsigned.stderr));
    let unsigned = std::fs::read(dir.join("unsigned.sync")).unwrap();
    assert!(matches!(open(&unsigned, &central, std::slice::from_ref(&node_public)), Err(SyncFileError::Malformed(_))));
    // a changed byte, and a file for the node opened by central
    let mut changed = file.clone();
    let last = changed.len() - 1;
    changed[last] ^= 0x80;
    assert_eq!(open(&changed, &central, std::slice::from_ref(&node_public)), Err(SyncFileError::Tampered));
    let for_node = seal(bundle, &central, &node_public).unwrap();
    assert_eq!(open(&for_node, &central, &[node_public]), Err(SyncFileError::NotForThisKey));
    std::fs::remove_dir_all(&dir).ok();
}
