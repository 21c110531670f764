use std::path::Path;

use super::*;

fn env(name: &str) -> EnvName {
    EnvName::parse(name).unwrap()
}

/// Fixed values, for the deploy-time sources.
struct Fixed;

impl Sources for Fixed {
    fn var(&self, name: &str) -> Option<String> {
        (name == "DATABASE_URL").then(|| "postgres://db/web".to_string())
    }
    fn file(&self, path: &Path) -> std::io::Result<String> {
        if path == Path::new("secrets/api-key") {
            Ok("k-123\n".into())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such file",
            ))
        }
    }
}

/// Every `sluice.toml` example in the README (a ```toml block with `[[service]]`).
fn readme_examples() -> Vec<String> {
    let readme = include_str!("../../../../README.md");
    let mut out = Vec::new();
    let mut rest = readme;
    while let Some(start) = rest.find("```toml\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed block");
        if body[..end].contains("[[service]]") {
            out.push(body[..end].to_string());
        }
        rest = &body[end + 3..];
    }
    out
}

#[test]
fn every_readme_example_parses_and_makes_requests() {
    let examples = readme_examples();
    assert!(!examples.is_empty(), "the README has a sluice.toml example");
    for text in examples {
        let f = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let reqs = requests(&f, None, Some("abc123"), &Fixed).unwrap();
        assert_eq!(reqs.len(), f.services.len());
        let web = &reqs[0];
        assert_eq!(web.image.to_string(), "registry.example.com/web:abc123");
        assert_eq!(web.env[&env("RUST_LOG")].value, "info");
        assert!(!web.env[&env("RUST_LOG")].secret);
        assert_eq!(web.env[&env("DATABASE_URL")].value, "postgres://db/web");
        assert!(web.env[&env("DATABASE_URL")].secret);
        assert_eq!(
            web.env[&env("API_KEY")].value,
            "k-123",
            "trailing newline trimmed"
        );
        assert!(!web.spec.is_default());
        // Offline, every value is a stand-in and nothing is read.
        requests(&f, None, Some("abc123"), &Offline).unwrap();
    }
}

#[test]
fn a_mistake_names_its_line_and_column() {
    let text = "[[service]]\nname = \"web\"\nimage = \"r/web\"\nservers = [\"a\"]\ncontainer_port = \"eighty\"\n";
    let e = parse(text).unwrap_err();
    assert!(e.contains("line 5, column 18"), "{e}");
    let e =
        parse("[[service]]\nname = \"web\"\nimage = \"r/web\"\nsrevers = [\"a\"]\n").unwrap_err();
    assert!(e.contains("line 4") && e.contains("srevers"), "{e}");
    let e = parse("[[service]\nname = 1").unwrap_err();
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn a_secret_written_in_the_file_is_refused() {
    let text = "[[service]]\nname = \"web\"\nimage = \"r/web\"\nservers = [\"a\"]\n\
                [service.env]\nTOKEN = { value = \"s3cret\", secret = true }\n";
    let e = parse(text).unwrap_err();
    assert!(e.contains("never a secret") && e.contains("line 6"), "{e}");
    let both = "[[service]]\nname = \"web\"\nimage = \"r/web\"\nservers = [\"a\"]\n\
                [service.env]\nT = { from_env = \"A\", from_file = \"b\" }\n";
    assert!(parse(both).unwrap_err().contains("exactly one"));
}

#[test]
fn the_tag_comes_from_the_deploy_unless_the_file_has_one() {
    let f =
        parse("[[service]]\nname = \"web\"\nimage = \"r:5000/web\"\nservers = [\"a\"]\n").unwrap();
    assert_eq!(
        requests(&f, None, Some("v2"), &Fixed).unwrap()[0]
            .image
            .to_string(),
        "r:5000/web:v2"
    );
    let e = requests(&f, None, None, &Fixed).unwrap_err();
    assert!(e.contains("--tag"), "{e}");
    let tagged =
        parse("[[service]]\nname = \"web\"\nimage = \"r/web:v1\"\nservers = [\"a\"]\n").unwrap();
    assert_eq!(
        requests(&tagged, None, None, &Fixed).unwrap()[0]
            .image
            .to_string(),
        "r/web:v1"
    );
    assert!(requests(&tagged, None, Some("v2"), &Fixed).is_err());
}

#[test]
fn services_are_chosen_by_name_and_missing_values_are_named() {
    let text = "[[service]]\nname = \"a\"\nimage = \"r/a\"\nservers = [\"s\"]\n\
                [[service]]\nname = \"b\"\nimage = \"r/b\"\nservers = [\"s\"]\n\
                [service.env]\nX = { from_env = \"UNSET_IN_TESTS\" }\n";
    let f = parse(text).unwrap();
    assert_eq!(requests(&f, Some("a"), Some("1"), &Fixed).unwrap().len(), 1);
    let e = requests(&f, Some("b"), Some("1"), &Fixed).unwrap_err();
    assert!(e.contains("$UNSET_IN_TESTS"), "{e}");
    let e = requests(&f, Some("c"), Some("1"), &Fixed).unwrap_err();
    assert!(e.contains("no service") && e.contains("a, b"), "{e}");
    let twice = "[[service]]\nname = \"a\"\nimage = \"r/a\"\nservers = [\"s\"]\n\
                 [[service]]\nname = \"a\"\nimage = \"r/a\"\nservers = [\"s\"]\n";
    assert!(parse(twice).unwrap_err().contains("twice"));
    let untargeted = parse("[[service]]\nname = \"a\"\nimage = \"r/a\"\n").unwrap();
    assert!(requests(&untargeted, None, Some("1"), &Fixed)
        .unwrap_err()
        .contains("servers or a selector"));
}
