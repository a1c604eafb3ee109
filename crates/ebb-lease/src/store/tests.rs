use super::*;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path()).expect("opening a fresh store")
}

#[test]
fn versions_count_writes_per_key_and_survive_reopening() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let s = open(&dir);
        assert_eq!(s.get("a").expect("get"), None);
        assert_eq!(s.put("a", b"1", None).expect("put"), 1);
        assert_eq!(s.put("a", b"2", None).expect("put"), 2);
        assert_eq!(s.put("b", b"x", None).expect("put"), 1);
        s.set_meta("bound", 7).expect("meta");
    }
    let s = open(&dir);
    assert_eq!(
        s.get("a").expect("get"),
        Some(Record {
            version: 2,
            value: b"2".to_vec()
        })
    );
    assert_eq!(s.meta("bound").expect("meta"), Some(7));
    assert_eq!(
        s.versions().expect("versions"),
        vec![("a".to_owned(), 2), ("b".to_owned(), 1)]
    );
}

#[test]
fn conditional_writes_check_the_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = open(&dir);
    assert_eq!(s.put("k", b"1", Some(0)).expect("first write at 0"), 1);
    match s.put("k", b"2", Some(0)) {
        Err(StoreError::VersionMismatch {
            expected: 0,
            current: 1,
        }) => {}
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert_eq!(s.put("k", b"2", Some(1)).expect("write at 1"), 2);
}

#[test]
fn oversized_keys_and_values_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = open(&dir);
    let long = "k".repeat(MAX_KEY_BYTES + 1);
    let err = s.put(&long, b"", None).expect_err("key too long");
    assert!(matches!(err, StoreError::KeyTooLong { .. }));
    assert!(err.to_string().contains("at most 1024"), "{err}");
    let big = vec![0u8; MAX_VALUE_BYTES + 1];
    let err = s.put("k", &big, None).expect_err("value too large");
    assert!(matches!(err, StoreError::ValueTooLarge { .. }), "{err}");
    assert_eq!(s.get("k").expect("get"), None, "nothing was stored");
}

/// Flips one byte inside the stored value, then reopens: the damage is
/// reported (at open or at read), and the value is never served.
#[test]
fn a_corrupted_record_is_reported_never_served() {
    let dir = tempfile::tempdir().expect("temp dir");
    let marker = b"MARKER-0123456789-MARKER";
    {
        let s = open(&dir);
        s.put("k", marker, None).expect("put");
    }
    let path = dir.path().join(DATA_FILE);
    let mut bytes = std::fs::read(&path).expect("read file");
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the value is in the file");
    bytes[at + 3] ^= 0x20;
    std::fs::write(&path, &bytes).expect("write file");
    let outcome = Store::open(dir.path()).and_then(|s| s.get("k"));
    match outcome {
        Err(StoreError::Corrupt { detail, .. }) => assert!(!detail.is_empty()),
        other => panic!("damage went unreported: {other:?}"),
    }
}

#[test]
fn a_torn_file_is_reported() {
    let dir = tempfile::tempdir().expect("temp dir");
    {
        let s = open(&dir);
        for i in 0..50 {
            s.put(&format!("k{i}"), &[7u8; 2_000], None).expect("put");
        }
    }
    let path = dir.path().join(DATA_FILE);
    let len = std::fs::metadata(&path).expect("stat").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    let outcome = Store::open(dir.path()).and_then(|s| s.versions());
    match outcome {
        Err(StoreError::Corrupt { .. }) => {}
        other => panic!("a torn file went unreported: {other:?}"),
    }
}

#[test]
fn a_data_file_held_by_another_store_is_reported_as_in_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = open(&dir);
    let second = Store::open(dir.path()).expect_err("the file is held by the first store");
    assert!(
        matches!(&second, StoreError::InUse { path } if path == &dir.path().join(DATA_FILE)),
        "{second:?}"
    );
    let said = second.to_string();
    assert!(said.contains("ebb origin"), "{said}");
    drop(first);
    open(&dir);
}
