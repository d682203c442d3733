use super::*;
use proptest::prelude::*;

fn canon(s: &str) -> String {
    Context::parse(s)
        .unwrap_or_else(|e| panic!("{s}: {e}"))
        .to_string()
}

fn reason(s: &str) -> String {
    Context::parse(s).expect_err(s).reason
}

#[test]
fn canonical_forms_match_the_kernel() {
    let cases = [
        (
            "system_u:object_r:container_file_t",
            "system_u:object_r:container_file_t",
        ),
        (
            "system_u:object_r:container_file_t:s0",
            "system_u:object_r:container_file_t:s0",
        ),
        ("u:r:t:s0:c1,c2", "u:r:t:s0:c1,c2"),
        ("u:r:t:s0:c2,c1", "u:r:t:s0:c1,c2"),
        ("u:r:t:s0:c3,c1,c2", "u:r:t:s0:c1.c3"),
        ("u:r:t:s0:c1.c2", "u:r:t:s0:c1,c2"),
        ("u:r:t:s0:c0.c1023", "u:r:t:s0:c0.c1023"),
        ("u:r:t:s0-s0", "u:r:t:s0"),
        ("u:r:t:s0-s0:c0.c1023", "u:r:t:s0-s0:c0.c1023"),
        ("u:r:t:s0:c1,c2-s0:c1,c2", "u:r:t:s0:c1,c2"),
        ("u:r:t:s0:c5,c1,c1,c2,c3,c7,c8", "u:r:t:s0:c1.c3,c5,c7,c8"),
        ("u:r:t:s0:c1.c3,c2.c5", "u:r:t:s0:c1.c5"),
        ("u:r:t:s0:c1,c3,c5", "u:r:t:s0:c1,c3,c5"),
        ("u:r:t:s0:c1.c3,c4", "u:r:t:s0:c1.c4"),
        ("u:r:t:s0-s15:c0.c1023", "u:r:t:s0-s15:c0.c1023"),
        ("u:r:t:s2:c0,c1,c2,c10,c11", "u:r:t:s2:c0.c2,c10,c11"),
    ];
    for (given, want) in cases {
        assert_eq!(canon(given), want, "{given}");
    }
}

#[test]
fn parts_are_exposed() {
    let c = Context::parse("system_u:object_r:container_file_t:s0-s0:c0.c2").unwrap();
    assert_eq!(c.user(), "system_u");
    assert_eq!(c.role(), "object_r");
    assert_eq!(c.type_(), "container_file_t");
    let range = c.range().unwrap();
    assert_eq!(range.low().to_string(), "s0");
    assert_eq!(range.high().categories().collect::<Vec<_>>(), [0, 1, 2]);
}

#[test]
fn errors_name_the_offending_part() {
    let cases = [
        ("", "the user is missing"),
        ("system_u", "the role is missing"),
        ("system_u:object_r", "the type is missing"),
        ("system_u::t", "the role is missing"),
        ("sys tem_u:r:t", "the user \"sys tem_u\" contains ' '"),
        ("u:r:t\n", "the type \"t\\n\" contains '\\n'"),
        (
            "u:r:t:",
            "low level \"\": sensitivity \"\" must start with 's'",
        ),
        ("u:r:t:x0", "sensitivity \"x0\" must start with 's'"),
        (
            "u:r:t:s",
            "sensitivity \"s\" must be 's' followed by a number",
        ),
        ("u:r:t:s16", "sensitivity \"s16\" is above s15"),
        ("u:r:t:s01", "sensitivity \"s01\" has a leading zero"),
        ("u:r:t:s0:", "category \"\" must start with 'c'"),
        ("u:r:t:s0:c1,", "category \"\" must start with 'c'"),
        ("u:r:t:s0:c1024", "category \"c1024\" is above c1023"),
        (
            "u:r:t:s0:c-1",
            "category \"c\" must be 'c' followed by a number",
        ),
        (
            "u:r:t:s0:c3.c1",
            "category \"c3.c1\" is not a range: c3 must be below c1",
        ),
        ("u:r:t:s0:c1.c1", "is not a range"),
        ("u:r:t:s0:c1.c2.c3", "category \"c1.c2.c3\""),
        ("u:r:t:s0:c1:c2", "category \"c1:c2\""),
        (
            "u:r:t:s0:c1-s0",
            "high level s0 does not dominate low level s0:c1",
        ),
        (
            "u:r:t:s1-s0",
            "high level s0 does not dominate low level s1",
        ),
        (
            "u:r:t:s0-",
            "high level \"\": sensitivity \"\" must start with 's'",
        ),
        ("u:r:t:s0-s0-s0", "high level \"s0-s0\""),
    ];
    for (given, want) in cases {
        let got = reason(given);
        assert!(got.contains(want), "{given:?}: {got:?} lacks {want:?}");
    }
    let err = Context::parse("u:r:t:s0:c1024").unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid SELinux context \"u:r:t:s0:c1024\": low level \"s0:c1024\": category \"c1024\" is above c1023"
    );
}

#[test]
fn levels_and_ranges_parse_alone() {
    assert_eq!(
        MlsRange::parse("s0-s0:c3,c1,c2").unwrap().to_string(),
        "s0-s0:c1.c3"
    );
    assert_eq!(Level::parse("s0:c9,c8").unwrap().to_string(), "s0:c8,c9");
    assert!(Level::parse("s0-s0").is_err());
    assert_eq!(Level::new(0, [3, 1, 2]).unwrap().to_string(), "s0:c1.c3");
    assert!(Level::new(16, []).is_err());
    assert!(Level::new(0, [1024]).is_err());
}

fn identifier() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_.-]{0,12}"
}

fn level() -> impl Strategy<Value = Level> {
    (
        0..=SENSITIVITY_MAX,
        prop::collection::btree_set(prop_oneof![0..=20u32, 0..=CATEGORY_MAX], 0..12),
    )
        .prop_map(|(sensitivity, categories)| Level {
            sensitivity,
            categories,
        })
}

fn range() -> impl Strategy<Value = MlsRange> {
    (level(), level(), any::<bool>()).prop_map(|(low, extra, single)| {
        if single {
            return MlsRange::single(low);
        }
        // The high level must dominate the low one: widen it.
        let high = Level {
            sensitivity: low.sensitivity.max(extra.sensitivity),
            categories: low.categories.union(&extra.categories).copied().collect(),
        };
        MlsRange { low, high }
    })
}

fn context() -> impl Strategy<Value = Context> {
    (
        identifier(),
        identifier(),
        identifier(),
        prop::option::of(range()),
    )
        .prop_map(|(user, role, type_, range)| Context {
            user,
            role,
            type_,
            range,
        })
}

/// A non-canonical spelling of a level: categories shuffled, duplicated, and grouped in
/// arbitrary `cA.cB` runs.
fn spelled(level: &Level, seed: u64) -> String {
    let cats: Vec<u32> = level.categories.iter().copied().collect();
    let mut items = Vec::new();
    let mut i = 0;
    let mut s = seed;
    while i < cats.len() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut j = i;
        while j + 1 < cats.len() && cats[j + 1] == cats[j] + 1 && (s >> 33) % 3 != 0 {
            j += 1;
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        if j > i {
            items.push(format!("c{}.c{}", cats[i], cats[j]));
        } else {
            items.push(format!("c{}", cats[i]));
        }
        if (s >> 40) % 4 == 0 {
            items.push(format!("c{}", cats[i]));
        }
        i = j + 1;
    }
    items.reverse();
    if items.is_empty() {
        format!("s{}", level.sensitivity)
    } else {
        format!("s{}:{}", level.sensitivity, items.join(","))
    }
}

proptest! {
    #[test]
    fn parse_render_parse_round_trips(c in context()) {
        let text = c.to_string();
        let back = Context::parse(&text).unwrap();
        prop_assert_eq!(&back, &c);
        prop_assert_eq!(back.to_string(), text);
    }

    #[test]
    fn any_spelling_renders_canonically(c in context(), seed in any::<u64>()) {
        let Some(range) = c.range() else { return Ok(()) };
        let text = format!(
            "{}:{}:{}:{}-{}",
            c.user, c.role, c.type_, spelled(&range.low, seed), spelled(&range.high, !seed)
        );
        let parsed = Context::parse(&text).unwrap();
        prop_assert_eq!(&parsed, &c);
        prop_assert_eq!(parsed.to_string(), c.to_string());
    }

    #[test]
    fn arbitrary_text_never_panics_and_round_trips(s in "[a-z0-9:,.\\-_ ]{0,40}") {
        if let Ok(c) = Context::parse(&s) {
            let text = c.to_string();
            prop_assert_eq!(Context::parse(&text).unwrap(), c);
        }
    }
}
