//! End-to-end tests of the `dtn` binary.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use dtn_core::bpv7::admin::{AdminRecord, StatusAssertion, StatusReport};
use dtn_core::bpv7::{BlockFlags, BlockType, Bundle, BundleBuilder, BundleFlags, CreationTimestamp, DtnTime};
use serde_json::Value;

const T0: u64 = 815_000_000_000;

/// A file under the temp directory, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(tag: &str) -> TempFile {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempFile(std::env::temp_dir().join(format!("dtn-cli-test-{}-{n}-{tag}", std::process::id())))
    }

    fn with(tag: &str, data: &[u8]) -> TempFile {
        let f = TempFile::new(tag);
        std::fs::write(&f.0, data).expect("write temp file");
        f
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("temp path is UTF-8")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn dtn(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dtn"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn dtn");
    let mut pipe = child.stdin.take().expect("stdin pipe");
    let data = stdin.to_vec();
    // A separate writer avoids a deadlock when the input is larger than the pipe buffer.
    let writer = std::thread::spawn(move || {
        // The child may exit without reading everything (e.g. on an early error).
        let _ = pipe.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait for dtn");
    writer.join().expect("stdin writer");
    out
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).expect("stdout is UTF-8")
}

/// The one line a failure writes to stderr.
fn error_line(o: &Output) -> String {
    let text = String::from_utf8(o.stderr.clone()).expect("stderr is UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "expected one stderr line, got {text:?}");
    lines[0].to_string()
}

/// Runs `dtn bundle create` with the payload on stdin and returns the bundle written to stdout.
fn create(args: &[&str], payload: &[u8]) -> Vec<u8> {
    let mut full = vec!["bundle", "create"];
    full.extend_from_slice(args);
    let o = dtn(&full, payload);
    assert!(o.status.success(), "create {args:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stderr.is_empty());
    o.stdout
}

fn simple_bundle(seq: u64, payload: &[u8]) -> Vec<u8> {
    let seq = seq.to_string();
    let t0 = T0.to_string();
    create(&["--source", "ipn:1.0", "--destination", "ipn:2.1", "--creation-time", &t0, "--sequence", &seq], payload)
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).expect("each line is a JSON object")).collect()
}

fn inspect_json(bundles: &[u8]) -> Vec<Value> {
    let o = dtn(&["inspect", "--json", "-"], bundles);
    assert!(o.status.success(), "inspect failed: {}", String::from_utf8_lossy(&o.stderr));
    json_lines(&o)
}

#[test]
fn create_then_inspect_text() {
    let bundle = create(
        &[
            "--source",
            "dtn://node-a/app",
            "--destination",
            "dtn://node-b/inbox",
            "--report-to",
            "dtn://node-a/reports",
            "--lifetime",
            "2h",
            "--hop-limit",
            "16",
            "--sequence",
            "7",
            "--creation-time",
            &T0.to_string(),
        ],
        b"hello, bundle",
    );
    let file = TempFile::with("text.bundle", &bundle);
    let o = dtn(&["inspect", file.path()], b"");
    assert!(o.status.success());
    assert!(o.stderr.is_empty());
    let text = stdout(&o);
    let created = format!("created       {} (DTN time {T0} ms), sequence 7", DtnTime(T0));
    for want in [
        format!("bundle 1 at byte 0 ({} bytes)", bundle.len()),
        format!("id            dtn://node-a/app {T0} 7"),
        "version       7".into(),
        "flags         0x0 (none)".into(),
        "crc type      2 (CRC-32C)".into(),
        "destination   dtn://node-b/inbox".into(),
        "source        dtn://node-a/app".into(),
        "report-to     dtn://node-a/reports".into(),
        created,
        "lifetime      7200000 ms (2h)".into(),
        "fragment      no".into(),
        "type 10 (hop-count)".into(),
        "hop count 0 of limit 16".into(),
        "type 1 (payload)".into(),
        "payload       13 bytes".into(),
        "|hello, bundle|".into(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn create_then_inspect_json() {
    let bundle = create(
        &[
            "--source",
            "ipn:977.0",
            "--destination",
            "ipn:4294967295.7.12",
            "--lifetime",
            "90s",
            "--hop-limit",
            "3",
            "--sequence",
            "42",
            "--creation-time",
            &T0.to_string(),
            "--must-not-fragment",
            "--report",
            "delivery,deletion",
        ],
        b"0123456789",
    );
    let file = TempFile::with("json.bundle", &bundle);
    let o = dtn(&["inspect", "--json", file.path()], b"");
    assert!(o.status.success());
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    let v = &lines[0];
    let p = &v["primary"];
    assert_eq!(p["version"], 7);
    let flags = BundleFlags::MUST_NOT_FRAGMENT.0 | BundleFlags::REPORT_DELIVERY.0 | BundleFlags::REPORT_DELETION.0;
    assert_eq!(p["flags"], flags);
    assert_eq!(p["crc_type"], 2);
    assert_eq!(p["destination"], "ipn:4294967295.7.12");
    assert_eq!(p["source"], "ipn:977.0");
    assert_eq!(p["report_to"], "ipn:977.0");
    assert_eq!(p["creation_timestamp"], serde_json::json!([T0, 42]));
    assert_eq!(p["lifetime"], 90_000);
    assert!(p.get("fragment_offset").is_none());
    assert_eq!(v["payload_len"], 10);
    assert_eq!(v["length"], bundle.len());
    assert_eq!(v["offset"], 0);
    assert_eq!(v["id"], format!("ipn:977.0 {T0} 42"));
    let blocks = v["blocks"].as_array().expect("blocks array");
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0]["type"], 10);
    assert_eq!(blocks[0]["number"], 2);
    assert_eq!(blocks[0]["hop_count"]["limit"], 3);
    assert_eq!(blocks[1]["type"], 1);
    assert_eq!(blocks[1]["number"], 1);
    assert_eq!(blocks[1]["flags"], 0);
    assert_eq!(blocks[1]["crc_type"], 2);
    assert_eq!(blocks[1]["len"], 10);

    // The codec agrees with what the CLI printed.
    let decoded = Bundle::decode(&bundle).expect("created bundle decodes");
    assert_eq!(v["id"], decoded.id().to_string());
    assert_eq!(decoded.payload(), b"0123456789");
}

#[test]
fn no_clock_and_crc_options() {
    let bundle = create(
        &[
            "--source",
            "dtn://sensor/",
            "--destination",
            "dtn://collector/~data",
            "--creation-time",
            "0",
            "--crc",
            "16",
            "--block-crc",
            "none",
            "--lifetime",
            "1500",
        ],
        b"x",
    );
    let v = &inspect_json(&bundle)[0];
    assert_eq!(v["primary"]["crc_type"], 1);
    assert_eq!(v["primary"]["creation_timestamp"], serde_json::json!([0, 0]));
    assert_eq!(v["primary"]["lifetime"], 1500);
    let blocks = v["blocks"].as_array().expect("blocks array");
    assert_eq!(blocks[0]["type"], 7, "time 0 needs a bundle-age block");
    assert_eq!(blocks[0]["bundle_age"], 0);
    assert!(blocks.iter().all(|b| b["crc_type"] == 0));

    let o = dtn(&["inspect", "-"], &bundle);
    assert!(stdout(&o).contains("created       0 (no clock), sequence 0"));
    assert!(stdout(&o).contains("age 0 ms (0s)"));
}

#[test]
fn default_creation_time_is_now() {
    let now_dtn = |()| {
        let unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock after 1970").as_millis()
                as u64;
        DtnTime::from_unix_ms(unix).0
    };
    let before = now_dtn(());
    let bundle = create(&["--source", "ipn:1.0", "--destination", "ipn:2.1"], b"");
    let after = now_dtn(());
    let v = &inspect_json(&bundle)[0];
    let t = v["primary"]["creation_timestamp"][0].as_u64().expect("time");
    assert!(before <= t && t <= after, "{before} <= {t} <= {after}");
    assert_eq!(v["payload_len"], 0);
    assert_eq!(v["primary"]["lifetime"], 86_400_000);
}

#[test]
fn stream_of_three_bundles_gives_three_json_lines() {
    let parts: Vec<Vec<u8>> = (1..=3).map(|i| simple_bundle(i, format!("payload {i}").as_bytes())).collect();
    let stream = parts.concat();
    let file = TempFile::with("three.bundles", &stream);
    for input in [file.path(), "-"] {
        let o = dtn(&["inspect", "--json", input], &stream);
        assert!(o.status.success());
        let lines = json_lines(&o);
        assert_eq!(lines.len(), 3);
        let mut offset = 0;
        for (i, v) in lines.iter().enumerate() {
            assert_eq!(v["index"], i + 1);
            assert_eq!(v["offset"], offset);
            assert_eq!(v["length"], parts[i].len());
            assert_eq!(v["primary"]["creation_timestamp"][1], i + 1);
            assert_eq!(v["payload_len"], 9);
            offset += parts[i].len();
        }
    }
    let o = dtn(&["inspect", "-"], &stream);
    let text = stdout(&o);
    assert!(text.contains(&format!("bundle 3 at byte {}", parts[0].len() + parts[1].len())));
}

#[test]
fn payload_crc_mismatch_names_the_crc_byte() {
    let mut bundle = simple_bundle(1, b"some payload");
    // The payload ends the bundle: data, then 0x44 + 4 CRC bytes, then the 0xff break.
    let n = bundle.len();
    bundle[n - 8] ^= 0x20;
    let o = dtn(&["inspect", "-"], &bundle);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let line = error_line(&o);
    let want = format!("error: bundle 1 at byte {}: CRC mismatch in block 1:", n - 5);
    assert!(line.starts_with(&want), "{line}");
}

#[test]
fn primary_crc_mismatch_names_the_crc_byte() {
    let mut bundle = create(
        &["--source", "dtn://alpha/src", "--destination", "dtn://omega/dst", "--creation-time", &T0.to_string()],
        b"payload",
    );
    let primary_len = Bundle::decode(&bundle).expect("valid bundle").primary_encoded().len();
    let at = bundle.windows(5).position(|w| w == b"omega").expect("destination text");
    bundle[at] = b'O';
    let o = dtn(&["inspect", "--json", "-"], &bundle);
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    // The primary block starts after the 0x9f array header and ends with its 4 CRC value bytes.
    let crc_at = 1 + primary_len - 4;
    let line = error_line(&o);
    let want = format!("error: bundle 1 at byte {crc_at}: CRC mismatch in block 0:");
    assert!(line.starts_with(&want), "{line}");
}

#[test]
fn corrupt_second_bundle_after_a_good_one() {
    let first = simple_bundle(1, b"first");
    let mut second = simple_bundle(2, b"second");
    let n = second.len();
    second[n - 7] ^= 0x01;
    let stream = [first.clone(), second].concat();

    let o = dtn(&["inspect", "--json", "-"], &stream);
    assert_eq!(o.status.code(), Some(2));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["payload_len"], 5);
    let want = format!("error: bundle 2 at byte {}: CRC mismatch in block 1", first.len() + n - 5);
    let line = error_line(&o);
    assert!(line.starts_with(&want), "{line}");

    let o = dtn(&["inspect", "-"], &stream);
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).starts_with("bundle 1 at byte 0"));
    assert!(error_line(&o).starts_with(&want));
}

#[test]
fn truncation_is_reported_at_the_end_of_input() {
    let bundle = simple_bundle(1, b"truncate me");
    for k in 1..bundle.len() {
        let o = dtn(&["inspect", "-"], &bundle[..k]);
        assert_eq!(o.status.code(), Some(2), "prefix {k}");
        assert_eq!(
            error_line(&o),
            format!("error: bundle 1 at byte {k}: truncated: input ended inside the bundle"),
            "prefix {k}"
        );
    }
    // A truncated second bundle: the offset counts from the start of the input.
    let stream = [bundle.clone(), bundle.clone()].concat();
    let cut = bundle.len() + 10;
    let o = dtn(&["inspect", "--json", "-"], &stream[..cut]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json_lines(&o).len(), 1);
    assert_eq!(error_line(&o), format!("error: bundle 2 at byte {cut}: truncated: input ended inside the bundle"));
}

#[test]
fn truncation_inside_a_large_extension_block() {
    let bundle = BundleBuilder::new("dtn://a/x".parse().expect("eid"), "ipn:2.1".parse().expect("eid"))
        .creation(CreationTimestamp::new(T0, 1))
        .extension_block(BlockType(192), BlockFlags::default(), vec![7; 10_000])
        .payload(vec![1; 300])
        .build()
        .expect("bundle")
        .to_vec();
    let o = dtn(&["inspect", "-"], &bundle[..8000]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(error_line(&o), "error: bundle 1 at byte 8000: truncated: input ended inside the bundle");
}

#[test]
fn every_flipped_byte_is_rejected_cleanly() {
    let bundle = simple_bundle(9, b"flip");
    for i in 0..bundle.len() {
        let mut bad = bundle.clone();
        bad[i] ^= 0x01;
        let o = dtn(&["inspect", "-"], &bad);
        assert_eq!(o.status.code(), Some(2), "byte {i}");
        let line = error_line(&o);
        assert!(line.starts_with("error: bundle 1 at byte "), "{line}");
    }
}

#[test]
fn garbage_and_trailing_bytes() {
    let o = dtn(&["inspect", "-"], b"this is not a bundle\n");
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(error_line(&o), "error: bundle 1 at byte 0: malformed CBOR: expected a bundle (CBOR array)");

    let o = dtn(&["inspect", "-"], &[0x82, 0x01, 0x02]);
    assert_eq!(o.status.code(), Some(2));
    assert!(error_line(&o).contains("indefinite-length array"));

    let bundle = simple_bundle(1, b"ok");
    let o = dtn(&["inspect", "--json", "-"], &[&bundle[..], b"junk"].concat());
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(json_lines(&o).len(), 1);
    assert!(error_line(&o).starts_with(&format!("error: bundle 2 at byte {}:", bundle.len())), "{}", error_line(&o));
}

#[test]
fn empty_input_is_an_error() {
    let o = dtn(&["inspect", "-"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(error_line(&o).contains("empty"));

    let empty = TempFile::with("empty", b"");
    let o = dtn(&["inspect", "--json", empty.path()], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(error_line(&o).contains("empty"));
}

#[test]
fn missing_file_is_an_io_error() {
    let missing = TempFile::new("missing");
    let o = dtn(&["inspect", missing.path()], b"");
    assert_eq!(o.status.code(), Some(1));
    let line = error_line(&o);
    assert!(line.starts_with("error: cannot open "), "{line}");
    assert!(line.contains(missing.path()), "{line}");

    let o =
        dtn(&["bundle", "create", "--source", "ipn:1.0", "--destination", "ipn:2.1", "--payload", missing.path()], b"");
    assert_eq!(o.status.code(), Some(1));
    assert!(error_line(&o).contains(missing.path()));
}

#[test]
fn output_over_the_payload_is_refused() {
    let file = TempFile::with("self.bin", b"precious");
    let o = dtn(
        &[
            "bundle",
            "create",
            "--source",
            "ipn:1.0",
            "--destination",
            "ipn:2.1",
            "--payload",
            file.path(),
            "--output",
            file.path(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(error_line(&o).contains("is the payload file"));
    assert_eq!(std::fs::read(&file.0).expect("payload still there"), b"precious");
}

#[test]
fn primary_crc_none_is_refused() {
    let o = dtn(&["bundle", "create", "--source", "ipn:1.0", "--destination", "ipn:2.1", "--crc", "none"], b"");
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    let line = error_line(&o);
    assert!(line.contains("--crc"), "{line}");
    assert!(line.contains("--block-crc none"), "{line}");

    let bundle = create(&["--source", "ipn:1.0", "--destination", "ipn:2.1", "--block-crc", "none"], b"abc");
    let v = &inspect_json(&bundle)[0];
    assert_eq!(v["primary"]["crc_type"], 2);
    assert_eq!(v["blocks"][0]["crc_type"], 0);
}

#[test]
fn bad_eids_and_options_are_rejected() {
    let base = ["bundle", "create", "--destination", "ipn:2.1"];
    for (opt, val, hint) in [
        ("--source", "foo", "unsupported EID scheme"),
        ("--source", "dtn://a", "//node-name/demux"),
        ("--source", "ipn:1", "ipn:node.service"),
        ("--report-to", "ipn:01.2", "ipn:node.service"),
        ("--lifetime", "5x", "unit"),
        ("--lifetime", "99999999999999999d", "too large"),
        ("--hop-limit", "0", "1..=255"),
        ("--hop-limit", "256", "1..=255"),
        ("--creation-time", "yesterday", "now"),
        ("--block-crc", "64", "none, 16 or 32c"),
    ] {
        let mut args = base.to_vec();
        if opt != "--source" {
            args.extend_from_slice(&["--source", "ipn:1.0"]);
        }
        args.extend_from_slice(&[opt, val]);
        let o = dtn(&args, b"");
        assert_eq!(o.status.code(), Some(2), "{opt} {val}");
        assert!(o.stdout.is_empty());
        let line = error_line(&o);
        assert!(line.starts_with("error: "), "{line}");
        assert!(line.contains(opt) && line.contains(hint), "{line}");
    }

    // Valid options, invalid bundle: RFC 9171 §4.2.3 forbids reports about anonymous bundles.
    let o = dtn(&["bundle", "create", "--source", "dtn:none", "--destination", "ipn:2.1", "--report", "all"], b"");
    assert_eq!(o.status.code(), Some(2));
    let line = error_line(&o);
    assert!(line.contains("cannot build bundle") && line.contains("dtn:none"), "{line}");
}

#[test]
fn anonymous_source_gets_must_not_fragment() {
    let bundle = create(&["--source", "dtn:none", "--destination", "ipn:2.1"], b"");
    let v = &inspect_json(&bundle)[0];
    assert_eq!(v["primary"]["source"], "dtn:none");
    assert_eq!(v["primary"]["flags"], BundleFlags::MUST_NOT_FRAGMENT.0);
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn file_and_stdin_payloads_give_identical_bundles() {
    let data = pattern(200_000);
    let payload = TempFile::with("payload.bin", &data);
    let out = TempFile::new("from-file.bundle");
    let args = [
        "--source",
        "ipn:1.0",
        "--destination",
        "dtn://sink/x",
        "--creation-time",
        "123456",
        "--hop-limit",
        "9",
        "--crc",
        "16",
    ];
    let mut with_files = vec!["bundle", "create"];
    with_files.extend_from_slice(&args);
    with_files.extend_from_slice(&["--payload", payload.path(), "--output", out.path()]);
    let o = dtn(&with_files, b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(o.stdout.is_empty());
    let from_file = std::fs::read(&out.0).expect("output written");
    let from_stdin = create(&args, &data);
    assert_eq!(from_file, from_stdin);
}

#[test]
fn large_payload_streams_through_create_and_inspect() {
    const LEN: usize = 20 << 20;
    let data = pattern(LEN);
    let payload = TempFile::with("big-payload.bin", &data);
    let out = TempFile::new("big.bundle");
    let o = dtn(
        &[
            "bundle",
            "create",
            "--source",
            "ipn:1.0",
            "--destination",
            "ipn:2.1",
            "--payload",
            payload.path(),
            "-o",
            out.path(),
        ],
        b"",
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let o = dtn(&["inspect", "--json", out.path()], b"");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = json_lines(&o);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["payload_len"], LEN);
    assert_eq!(lines[0]["blocks"][0]["len"], LEN);

    let bytes = std::fs::read(&out.0).expect("bundle file");
    assert_eq!(lines[0]["length"], bytes.len());
    let decoded = Bundle::decode(&bytes).expect("valid bundle");
    assert!(decoded.payload() == &data[..], "payload differs");
}

#[test]
fn admin_record_payload_is_decoded() {
    let report = AdminRecord::StatusReport(StatusReport {
        received: StatusAssertion { asserted: true, time: Some(DtnTime(T0 + 5)) },
        forwarded: StatusAssertion::default(),
        delivered: StatusAssertion::default(),
        deleted: StatusAssertion::default(),
        reason: 6,
        source: "ipn:3.0".parse().expect("eid"),
        creation: CreationTimestamp::new(T0, 4),
        fragment: None,
    });
    let bundle = BundleBuilder::new("ipn:5.0".parse().expect("eid"), "ipn:3.0".parse().expect("eid"))
        .creation(CreationTimestamp::new(T0 + 10, 0))
        .flags(BundleFlags::ADMIN_RECORD)
        .payload(report.encode())
        .build()
        .expect("bundle")
        .to_vec();

    let o = dtn(&["inspect", "-"], &bundle);
    assert!(o.status.success());
    let text = stdout(&o);
    for want in [
        "flags         0x2 (admin_record)".to_string(),
        "admin record  bundle status report".into(),
        format!("received    yes, at {}", DtnTime(T0 + 5)),
        "forwarded   no".into(),
        "reason      6 (no known route to destination from here)".into(),
        format!("subject     ipn:3.0 {T0} 4"),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }

    let v = &inspect_json(&bundle)[0];
    let sr = &v["admin_record"]["status_report"];
    assert_eq!(v["admin_record"]["record_type"], 1);
    assert_eq!(sr["received"]["asserted"], true);
    assert_eq!(sr["received"]["time"], T0 + 5);
    assert_eq!(sr["reason"], 6);
    assert_eq!(sr["subject"]["source"], "ipn:3.0");
    assert_eq!(sr["subject"]["creation_timestamp"], serde_json::json!([T0, 4]));
}

#[test]
fn extension_blocks_are_decoded() {
    let bundle = BundleBuilder::new("dtn://a/x".parse().expect("eid"), "dtn://b/y".parse().expect("eid"))
        .creation(CreationTimestamp::new(T0, 0))
        .previous_node("dtn://relay/".parse().expect("eid"))
        .bundle_age_ms(61_500)
        .hop_limit(8)
        .extension_block(BlockType(200), BlockFlags(0x10), vec![0xab, 0xcd])
        .payload(b"p".to_vec())
        .build()
        .expect("bundle")
        .to_vec();

    let v = &inspect_json(&bundle)[0];
    let blocks = v["blocks"].as_array().expect("blocks array");
    let types: Vec<u64> = blocks.iter().filter_map(|b| b["type"].as_u64()).collect();
    assert_eq!(types, [6, 7, 10, 200, 1]);
    assert_eq!(blocks[0]["previous_node"], "dtn://relay/");
    assert_eq!(blocks[1]["bundle_age"], 61_500);
    assert_eq!(blocks[2]["hop_count"]["limit"], 8);
    assert_eq!(blocks[3]["flags"], 0x10);
    assert_eq!(blocks[3]["len"], 2);

    let text = stdout(&dtn(&["inspect", "-"], &bundle));
    for want in [
        "node dtn://relay/",
        "age 61500 ms (1m 1.5s)",
        "hop count 0 of limit 8",
        "type 200 (private/experimental)",
        "0x10 (discard_if_unprocessable)",
        "data abcd",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}
