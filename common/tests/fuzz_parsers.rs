//! Fuzzing the text parsers: names, image references, durations, timestamps, port ranges.
//!
//! Three kinds of input per parser:
//! - arbitrary text (every `char`, control characters included) and arbitrary bytes: the
//!   parser never panics, and whatever it accepts round-trips through `Display` and serde;
//! - near-valid text built from the parser's own alphabet plus a few troublemakers (`é`,
//!   `/`, `-`, a space, a NUL), so most inputs get past the first check and the fuzzer
//!   reaches the deep branches;
//! - structured generators for the grammar, checked against an independent reference
//!   predicate (accepted exactly when the reference says so, with the same value).
//!
//! A bounded run is part of `cargo test`; `PROPTEST_CASES=100000 cargo test -p
//! sluice-common --test fuzz_parsers --release` is the long run (see FUZZING.md).

use std::fmt::{Debug, Display};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde::{de::DeserializeOwned, Serialize};
use sluice_common::deployment::Phase;
use sluice_common::image::ImageRef;
use sluice_common::names::{
    EnvName, Holder, InvalidValue, Label, LockKey, ServerName, ServiceName,
};
use sluice_common::ports::{Port, PortRange};
use sluice_common::time::{DurationSpec, Timestamp};

/// `cases` unless `PROPTEST_CASES` asks for more (or fewer). No persistence file: a failure
/// is turned into a named regression test at the bottom of this file instead.
fn config(cases: u32) -> Config {
    let mut c = Config {
        failure_persistence: None,
        ..Config::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = cases;
    }
    c
}

/// Any text at all: every `char`, control characters and surrogates' neighbours included.
fn any_text() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<char>(), 0..90).prop_map(|v| v.into_iter().collect())
}

/// Text made of `pieces`: a parser's alphabet and separators plus troublemakers.
fn near(pieces: &'static [&'static str], max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(pieces), 0..max).prop_map(|v| v.concat())
}

/// Characters that break naive byte-indexing, trimming and charset checks.
const TROUBLE: &[&str] = &["é", "Ä", "ß", "🦀", " ", "\0", "\n", "\u{202e}", "A", "Z"];

/// What every parser owes: no panic (implicit), `parse` and serde agree, accepted values
/// display and serialize to text that parses back to the same value, errors say what and why.
fn check_text<T>(
    s: &str,
    parse: fn(&str) -> Result<T, InvalidValue>,
    what: &str,
    exact: bool,
) -> Result<Option<T>, TestCaseError>
where
    T: Display + Debug + PartialEq + Serialize + DeserializeOwned,
{
    let parsed = parse(s);
    let via_serde = serde_json::from_value::<T>(serde_json::Value::String(s.to_string()));
    prop_assert_eq!(
        parsed.is_ok(),
        via_serde.is_ok(),
        "parse and serde disagree on {:?}",
        s
    );
    match parsed {
        Ok(v) => {
            let shown = v.to_string();
            if exact {
                prop_assert_eq!(&shown, s, "display is not the input");
            }
            let again = parse(&shown);
            prop_assert!(again.is_ok(), "{:?} displays as {:?}, refused", s, shown);
            prop_assert_eq!(&again.unwrap(), &v);
            prop_assert_eq!(&via_serde.unwrap(), &v);
            let json = serde_json::to_string(&v).expect("serializes");
            prop_assert_eq!(&json, &serde_json::to_string(&shown).unwrap());
            prop_assert_eq!(&serde_json::from_str::<T>(&json).unwrap(), &v);
            Ok(Some(v))
        }
        Err(e) => {
            prop_assert_eq!(e.what, what);
            prop_assert!(!e.reason.is_empty());
            // The echoed input is truncated so a huge input never floods a log line.
            prop_assert!(e.value.len() <= 80 + '…'.len_utf8(), "{}", e.value.len());
            prop_assert!(e.to_string().contains(what));
            Ok(None)
        }
    }
}

/// Runs `s` through every text parser.
fn check_all(s: &str) -> Result<(), TestCaseError> {
    check_text(s, ServiceName::parse, "service name", true)?;
    check_text(s, ServerName::parse, "server name", true)?;
    check_text(s, EnvName::parse, "environment variable name", true)?;
    check_text(s, LockKey::parse, "lock key", true)?;
    check_text(s, Holder::parse, "holder", true)?;
    check_text(s, Label::parse, "label", true)?;
    check_text(s, ImageRef::parse, "image reference", true)?;
    check_text(s, DurationSpec::parse, "duration", false)?;
    check_text(s, Timestamp::parse, "timestamp", false)?;
    check_text(s, PortRange::parse, "port range", false)?;
    match Phase::new(s) {
        Ok(p) => {
            prop_assert_eq!(p.as_str(), s);
            let json = serde_json::to_string(&p).unwrap();
            prop_assert_eq!(serde_json::from_str::<Phase>(&json).unwrap(), p);
        }
        Err(e) => prop_assert_eq!(e.what, "phase"),
    }
    Ok(())
}

// ------------------------------------------------------------------ reference predicates

fn ref_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn ref_env_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn ref_lock_key(s: &str) -> bool {
    (1..=253).contains(&s.len())
        && s.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
                })
        })
}

fn ref_label(s: &str) -> bool {
    let part = |p: &str| {
        (1..=63).contains(&p.len())
            && p.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            })
    };
    s.split_once('=').is_some_and(|(k, v)| part(k) && part(v))
}

fn ref_holder(s: &str) -> bool {
    !s.trim().is_empty() && s.chars().count() <= 128 && !s.chars().any(char::is_control)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: i64) -> i64 {
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    }
}

/// The last millisecond RFC 3339 (four-digit years) can write: 9999-12-31T23:59:59.999Z.
const LAST_MS: u64 = 253_402_300_799_999;

// ------------------------------------------------------------------ structured generators

fn dns_label() -> impl Strategy<Value = String> {
    "[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
}

fn image_parts() -> impl Strategy<Value = (Option<String>, String, Option<String>, Option<String>)>
{
    let host = prop_oneof![
        Just("localhost".to_string()),
        "[a-z0-9]{1,6}(\\.[a-z0-9]([a-zA-Z0-9-]{0,3}[a-z0-9])?){1,3}",
    ];
    let registry = prop::option::of((host, prop::option::of(0u32..=65535)).prop_map(
        |(h, p)| match p {
            Some(p) => format!("{h}:{p}"),
            None => h,
        },
    ));
    // The first component has no '.' (it would be read as a registry).
    let first = "[a-z0-9]{1,5}((_|__|-{1,3})[a-z0-9]{1,4}){0,2}";
    let rest = prop::collection::vec("[a-z0-9]{1,5}((\\.|_|__|-{1,3})[a-z0-9]{1,4}){0,2}", 0..3);
    let tag = prop::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}");
    let digest = prop::option::of(prop_oneof![
        "[0-9a-f]{64}".prop_map(|h| format!("sha256:{h}")),
        "[a-z][a-z0-9+._-]{0,6}:[0-9a-fA-F]{32,70}",
    ]);
    (registry, first, rest, tag, digest).prop_map(|(registry, first, rest, tag, digest)| {
        let mut repo = first;
        for r in rest {
            repo.push('/');
            repo.push_str(&r);
        }
        (registry, repo, tag, digest)
    })
}

/// One edit of `s` at char position `at`: delete (kind 0), insert (1) or replace (2) with
/// `piece`.
fn edit(s: &str, at: usize, kind: u8, piece: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let (head, tail) = chars.split_at(at % (chars.len() + 1));
    let (piece, tail) = match kind % 3 {
        0 => ("", tail.get(1..).unwrap_or_default()),
        1 => (piece, tail),
        _ => (piece, tail.get(1..).unwrap_or_default()),
    };
    let mut out: String = head.iter().collect();
    out.push_str(piece);
    out.extend(tail);
    out
}

const IMAGE_PIECES: &[&str] = &[
    "a", "b", "z", "0", "9", ".", "_", "__", "-", "/", ":", "@", "sha256", "A", "é", "🦀", " ",
];

// ------------------------------------------------------------------ properties

proptest! {
    #![proptest_config(config(1000))]

    /// Arbitrary text never panics any parser; what is accepted round-trips.
    #[test]
    fn arbitrary_text(s in any_text()) {
        check_all(&s)?;
    }

    /// Arbitrary bytes, as text and as JSON, never panic.
    #[test]
    fn arbitrary_bytes(b in prop::collection::vec(any::<u8>(), 0..96)) {
        check_all(&String::from_utf8_lossy(&b))?;
        let _ = serde_json::from_slice::<ImageRef>(&b);
        let _ = serde_json::from_slice::<Timestamp>(&b);
        let _ = serde_json::from_slice::<DurationSpec>(&b);
        let _ = serde_json::from_slice::<PortRange>(&b);
        let _ = serde_json::from_slice::<Port>(&b);
        let _ = serde_json::from_slice::<Label>(&b);
        let _ = serde_json::from_slice::<LockKey>(&b);
    }

    /// Near-valid names, checked against reference predicates written independently.
    #[test]
    fn names_match_reference(
        s in prop_oneof![
            near(&["a", "z", "0", "9", "-", "-", "x1"], 70),
            near(&["a", "Z", "_", "0", "9", "=", "-", " ", "é"], 40),
            near(&["a", "z", "0", "-", "_", ".", "..", "/", "/", "service", "é", "A"], 80),
            near(TROUBLE, 12),
            dns_label(),
            "[a-z0-9_.-]{0,20}=[a-z0-9_.-]{0,20}",
            "[a-z0-9_.-]{1,12}(/[a-z0-9_.-]{0,12}){0,6}",
            " {0,3}[ -~]{0,140}\\t?",
        ]
    ) {
        prop_assert_eq!(ServiceName::parse(&s).is_ok(), ref_dns_label(&s), "{:?}", s);
        prop_assert_eq!(ServerName::parse(&s).is_ok(), ref_dns_label(&s), "{:?}", s);
        prop_assert_eq!(EnvName::parse(&s).is_ok(), ref_env_name(&s), "{:?}", s);
        prop_assert_eq!(LockKey::parse(&s).is_ok(), ref_lock_key(&s), "{:?}", s);
        prop_assert_eq!(Label::parse(&s).is_ok(), ref_label(&s), "{:?}", s);
        prop_assert_eq!(Holder::parse(&s).is_ok(), ref_holder(&s), "{:?}", s);
        check_all(&s)?;
    }

    /// Valid image references from the grammar parse into exactly their parts and display
    /// back to the same text.
    #[test]
    fn image_grammar((registry, repo, tag, digest) in image_parts()) {
        let mut s = String::new();
        if let Some(r) = &registry { s.push_str(r); s.push('/'); }
        s.push_str(&repo);
        if let Some(t) = &tag { s.push(':'); s.push_str(t); }
        if let Some(d) = &digest { s.push('@'); s.push_str(d); }
        // The second digest form can spell "sha256" by chance, with the wrong shape.
        let digest_ok = digest.as_deref().is_none_or(|d| match d.strip_prefix("sha256:") {
            Some(hex) => hex.len() == 64 && !hex.bytes().any(|b| b.is_ascii_uppercase()),
            None => true,
        });
        let fits = s.len() <= 512
            && registry.as_ref().map_or(0, |r| r.len() + 1) + repo.len() <= 255;
        match ImageRef::parse(&s) {
            Ok(i) => {
                prop_assert!(digest_ok && fits, "{:?} accepted", s);
                prop_assert_eq!(i.registry(), registry.as_deref());
                prop_assert_eq!(i.repository(), repo.as_str());
                prop_assert_eq!(i.tag(), tag.as_deref());
                prop_assert_eq!(i.digest(), digest.as_deref());
                prop_assert_eq!(i.to_string(), s.clone());
            }
            Err(e) => prop_assert!(!(digest_ok && fits), "{:?}: {}", s, e),
        }
        check_text(&s, ImageRef::parse, "image reference", true)?;
    }

    /// One edit away from a valid reference: no panic, and accepted text is canonical.
    #[test]
    fn image_one_edit_away(
        (registry, repo, tag, digest) in image_parts(),
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), prop::sample::select(IMAGE_PIECES)), 1..4),
    ) {
        let mut s = String::new();
        if let Some(r) = &registry { s.push_str(r); s.push('/'); }
        s.push_str(&repo);
        if let Some(t) = &tag { s.push(':'); s.push_str(t); }
        if let Some(d) = &digest { s.push('@'); s.push_str(d); }
        for (at, kind, piece) in edits {
            s = edit(&s, at, kind, piece);
        }
        check_text(&s, ImageRef::parse, "image reference", true)?;
    }

    /// Durations: `<number><unit>` groups, against a reference sum.
    #[test]
    fn durations_match_reference(
        groups in prop::collection::vec((
            prop_oneof![
                prop::sample::select(&["0", "1", "30", "59", "60", "999", "1000", "720", "721",
                    "43200", "2592000000", "000000000001", "9999999999999", ""][..])
                    .prop_map(str::to_string),
                "[0-9]{1,13}",
            ],
            prop::sample::select(&["ms", "s", "m", "h", "d", "", "min", "S", "µs", " ", "-"][..]),
        ), 0..5),
    ) {
        let s: String = groups.iter().map(|(n, u)| format!("{n}{u}")).collect();
        let mut expected: Option<u128> = if groups.is_empty() { None } else { Some(0) };
        for (n, u) in &groups {
            let per = match *u { "ms" => 1, "s" => 1_000, "m" => 60_000, "h" => 3_600_000,
                "d" => 86_400_000, _ => 0 };
            expected = match expected {
                Some(t) if per > 0 && !n.is_empty() && n.len() <= 12 =>
                    Some(t + n.parse::<u128>().unwrap() * per),
                _ => None,
            };
        }
        let expected = expected.filter(|t| *t <= DurationSpec::MAX.as_millis());
        // Glued groups can re-split differently ("1" + "" + "0s" is "10s", "0m" + "" + "s"
        // is "0ms"): compare only when every group has a number and a unit, so the text
        // splits the way it was built.
        if groups.iter().all(|(n, u)| !n.is_empty() && !u.is_empty() && *u != " " && *u != "-") {
            let got = DurationSpec::parse(&s).ok().map(|d| d.get().as_millis());
            prop_assert_eq!(got, expected, "{:?}", s);
        }
        check_text(&s, DurationSpec::parse, "duration", false)?;
    }

    /// Every duration up to the maximum displays in canonical form and parses back.
    #[test]
    fn duration_values_round_trip(ms in 0..=DurationSpec::MAX.as_millis() as u64) {
        let d = DurationSpec(Duration::from_millis(ms));
        let back = check_text(&d.to_string(), DurationSpec::parse, "duration", true)?;
        prop_assert_eq!(back, Some(d));
    }

    /// RFC 3339 timestamps from their fields, against a reference calendar.
    #[test]
    fn timestamps_match_reference(
        y in prop_oneof![1960i64..=2100, 9990i64..=9999, Just(1970i64), Just(10000i64)],
        mo in 0i64..=13,
        d in 0i64..=32,
        h in 0i64..=24,
        mi in 0i64..=60,
        sec in 0i64..=61,
        frac in prop::option::of("[0-9]{1,10}"),
        sep in prop::sample::select(&["T", " ", "t", "_"][..]),
        zone in prop::sample::select(&["Z", "", "+00:00", "z", "+01:00", "ZZ"][..]),
    ) {
        let mut s = format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{sec:02}");
        if let Some(f) = &frac { s.push('.'); s.push_str(f); }
        s.push_str(zone);
        let fields_ok = (1970..=9999).contains(&y) && (1..=12).contains(&mo)
            && d >= 1 && d <= days_in_month(y, mo) && h <= 23 && mi <= 59
            // A leap second (:60) is refused: the API documents date-time, and it used to be
            // folded into the next minute.
            && sec <= 59;
        let expected_ms = {
            let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec;
            let frac_ms = frac.as_deref().map_or(0, |f| {
                format!("{f:0<3}")[..3].parse::<i64>().unwrap()
            });
            secs * 1000 + frac_ms
        };
        match Timestamp::parse(&s) {
            Ok(t) => {
                prop_assert!(fields_ok, "{:?} accepted", s);
                prop_assert_eq!(t.as_millis() as i64, expected_ms, "{:?}", s);
            }
            Err(_) => prop_assert!(
                !(fields_ok && sep == "T" && zone == "Z"),
                "canonical {:?} refused", s
            ),
        }
        check_text(&s, Timestamp::parse, "timestamp", false)?;
    }

    /// Any instant (even past year 9999) displays without panicking; those RFC 3339 can
    /// write display canonically and parse back to the same millisecond.
    #[test]
    fn timestamp_values_round_trip(
        ms in prop_oneof![0..=LAST_MS, LAST_MS - 5..=LAST_MS + 5, any::<u64>()],
    ) {
        let t = Timestamp(ms);
        let shown = t.to_string();
        let json = serde_json::to_string(&t).expect("every timestamp serializes");
        prop_assert_eq!(&json, &serde_json::to_string(&shown).unwrap());
        let back = check_text(&shown, Timestamp::parse, "timestamp", true)?;
        prop_assert_eq!(back, Some(Timestamp(ms.min(LAST_MS))));
    }

    /// `start-end` port ranges against a reference.
    #[test]
    fn port_ranges_match_reference(
        a in prop_oneof![
            prop::sample::select(&["0", "1", "80", "20000", "32000", "65535", "65536", "-1",
                "+5", " 7 ", "00080", "", "x", "1e3", "99999999999"][..]).prop_map(str::to_string),
            "[0-9]{1,6}",
        ],
        b in prop_oneof![
            prop::sample::select(&["0", "1", "80", "20000", "32000", "65535", "65536", "-1",
                "+5", " 7 ", "00080", "", "x", "1-2"][..]).prop_map(str::to_string),
            "[0-9]{1,6}",
        ],
        sep in prop::sample::select(&["-", "-", "–", ":", " - ", "--"][..]),
    ) {
        let s = format!("{a}{sep}{b}");
        let num = |x: &str| x.trim().parse::<u16>().ok();
        let expected = s.split_once('-').and_then(|(x, y)| {
            let (x, y) = (num(x)?, num(y)?);
            (x >= 1 && x <= y).then_some((x, y))
        });
        let got = PortRange::parse(&s).ok().map(|r| (r.start(), r.end()));
        prop_assert_eq!(got, expected, "{:?}", s);
        if let Some((x, y)) = got {
            prop_assert_eq!(PortRange::new(x, y).unwrap().len(), u32::from(y) - u32::from(x) + 1);
        }
        check_text(&s, PortRange::parse, "port range", false)?;
    }

    /// Ports from any JSON number: accepted exactly when 1–65535, serialized as the number.
    #[test]
    fn ports_from_any_number(
        n in prop_oneof![any::<i64>(), -2i64..=70_000, Just(65_535), Just(65_536), Just(0)],
        float in any::<bool>(),
    ) {
        let text = if float { format!("{n}.0") } else { n.to_string() };
        match serde_json::from_str::<Port>(&text) {
            Ok(p) => {
                prop_assert!(!float && (1..=65_535).contains(&n));
                prop_assert_eq!(i64::from(p.get()), n);
                prop_assert_eq!(serde_json::to_string(&p).unwrap(), n.to_string());
            }
            Err(_) => prop_assert!(float || !(1..=65_535).contains(&n)),
        }
    }
}

// ------------------------------------------------------------------ regressions found by the suites above

/// `image_one_edit_away`: a separator followed by a multi-byte character sliced the error
/// message mid-character and panicked (`a.éa`, `00a_é_a0`).
#[test]
fn image_separator_before_multibyte_char_is_an_error_not_a_panic() {
    for s in ["a.éa", "00a_é_a0", "a__🦀a", "a-ßa", "x/a.éa:v1"] {
        let e = ImageRef::parse(s).unwrap_err();
        assert!(e.reason.contains("invalid separator"), "{s:?}: {e}");
    }
}

/// `timestamp_values_round_trip`: an instant past year 9999 made `Display` return
/// `fmt::Error`, so `to_string` and serde_json panicked. They now write the last writable
/// instant.
#[test]
fn timestamps_past_year_9999_display_as_the_last_writable_instant() {
    assert_eq!(Timestamp::LAST_WRITABLE.as_millis(), LAST_MS);
    for ms in [LAST_MS + 1, 253_402_300_800_000, u64::MAX] {
        assert_eq!(Timestamp(ms).to_string(), "9999-12-31T23:59:59.999Z");
        assert_eq!(
            serde_json::to_string(&Timestamp(ms)).unwrap(),
            "\"9999-12-31T23:59:59.999Z\""
        );
    }
}
