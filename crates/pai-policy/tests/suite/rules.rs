use std::path::Path;

use pai_policy::{
    Action, Constraint, ConstraintKind, DataClass, Decision, Effect, Locality, Mode, Origin,
    Policy, RulePolicy, Subject,
};

const TOOLS: &[&str] = &["read_file", "write_file", "http_get", "list_dir"];

fn decide(p: &RulePolicy, s: &Subject<'_>) -> (Decision, String) {
    let v = p.check(s);
    (v.decision, v.rule)
}

#[test]
fn defaults_keep_the_modes_table_and_keep_secrets_local() {
    let p = RulePolicy::defaults();
    let read = Subject::tool("read_file", [Effect::Read], Mode::Chat);
    assert_eq!(p.check(&read).decision, Decision::Allow);
    let net_chat = Subject::tool("http_get", [Effect::Network], Mode::Chat);
    assert_eq!(decide(&p, &net_chat).0, Decision::Deny);
    let net_prompt = Subject::tool("http_get", [Effect::Network], Mode::Prompt);
    assert_eq!(
        decide(&p, &net_prompt),
        (Decision::Ask, "default:network-asks-in-prompt".into())
    );
    let net_agent = Subject::tool("http_get", [Effect::Network], Mode::Agent);
    assert_eq!(p.check(&net_agent).decision, Decision::Allow);
    assert_eq!(
        decide(&p, &net_agent.clone().tainted(true)),
        (Decision::Ask, "guard:tainted-turn-asks-network".into())
    );
    let write_agent = Subject::tool("write_file", [Effect::Write], Mode::Agent);
    assert_eq!(p.check(&write_agent).decision, Decision::Ask);
    let write_prompt = Subject::tool("write_file", [Effect::Write], Mode::Prompt);
    assert_eq!(p.check(&write_prompt).decision, Decision::Deny);

    let user = Origin::User;
    for (class, locality, want) in [
        (DataClass::Secret, Locality::Remote, Decision::Redact),
        (DataClass::Personal, Locality::Remote, Decision::Redact),
        (DataClass::Internal, Locality::Remote, Decision::Allow),
        (DataClass::Secret, Locality::Local, Decision::Allow),
    ] {
        let s = Subject::part(&user, class, locality, "p");
        assert_eq!(p.check(&s).decision, want, "{class} {locality}");
    }
    let private = Subject::fetch("http://127.0.0.1/", "127.0.0.1", Some("loopback"));
    assert_eq!(
        decide(&p, &private),
        (Decision::Deny, "default:no-private-addresses".into())
    );
    assert_eq!(
        p.check(&Subject::fetch("https://a.org/", "a.org", None))
            .decision,
        Decision::Allow
    );
}

#[test]
fn user_rules_come_before_defaults_and_the_strictest_match_wins() {
    let p = RulePolicy::parse(
        r#"
        [[rule]]
        id = "local-llm-ok"
        decision = "allow"
        host = "localhost:8080"

        [[rule]]
        id = "docs-ok"
        decision = "allow"
        host = "*.rust-lang.org"

        [[rule]]
        id = "no-blog"
        decision = "deny"
        host = "blog.rust-lang.org"
        "#,
        "policy.toml",
    )
    .unwrap();
    let s = Subject::fetch("http://localhost:8080/x", "localhost", Some("loopback"))
        .with_host("localhost", Some(8080));
    assert_eq!(decide(&p, &s), (Decision::Allow, "local-llm-ok".into()));
    let other_port = Subject::fetch("http://localhost:8081/", "localhost", Some("loopback"))
        .with_host("localhost", Some(8081));
    assert_eq!(p.check(&other_port).decision, Decision::Deny);
    let blog = Subject::fetch("https://blog.rust-lang.org/", "blog.rust-lang.org", None);
    assert_eq!(decide(&p, &blog), (Decision::Deny, "no-blog".into()));
    // A host rule also lets a network tool call to that host run in prompt mode.
    let mut call = Subject::tool("http_get", [Effect::Network], Mode::Prompt);
    call.host = Some("doc.rust-lang.org");
    assert_eq!(decide(&p, &call), (Decision::Allow, "docs-ok".into()));
}

#[test]
fn examples_are_checked_when_the_file_loads() {
    let good = r#"
        [[rule]]
        id = "paste"
        decision = "deny"
        host = "*.pastebin.com"
        examples = [{ host = "a.pastebin.com" }]
        counter_examples = [{ host = "pastebin.com.evil.org" }]
    "#;
    RulePolicy::parse(good, "policy.toml").unwrap();
    let bad = r#"
        [[rule]]
        id = "paste"
        decision = "deny"
        host = "*.pastebin.com"
        examples = [{ host = "pastebin.com" }]
    "#;
    let err = RulePolicy::parse(bad, "policy.toml").unwrap_err();
    assert_eq!(err.line, Some(2));
    assert!(
        err.to_string().contains("example 1 does not match"),
        "{err}"
    );
}

#[test]
fn bad_rules_are_errors_with_file_and_line() {
    for (text, needle) in [
        ("[[rule]]\ndecision = \"deny\"\n", "names no condition"),
        (
            "[[rule]]\ndecision = \"deny\"\nhost = \"a/b\"\n",
            "not a host pattern",
        ),
        (
            "[[rule]]\ndecision = \"deny\"\nclass = \"secrets\"\n",
            "not a data class",
        ),
        (
            "[[rule]]\ndecision = \"deny\"\non = \"egress\"\ntool = \"x\"\n",
            "not a checkpoint",
        ),
        (
            "[[rule]]\nid = \"default:x\"\ndecision = \"deny\"\ntool = \"x\"\n",
            "reserved",
        ),
        (
            "[[classify]]\npath = \"*.db\"\nclass = \"secretive\"\n",
            "not a data class",
        ),
        ("[policy]\nsafe = \"yes\"\n", "invalid type"),
        ("[[rule]\n", ""),
    ] {
        let err = RulePolicy::parse(text, "/cfg/policy.toml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("/cfg/policy.toml:"), "{msg}");
        assert!(err.line.is_some(), "{msg}");
        assert!(msg.contains(needle), "{msg}");
    }
    let p = RulePolicy::parse("[[rule]]\ndecision = \"deny\"\ntool = \"shell\"\n", "p").unwrap();
    let err = p.check_tools(TOOLS).unwrap_err();
    assert!(
        err.to_string().contains("'shell', which does not exist"),
        "{err}"
    );
}

#[test]
fn session_constraints_are_rules_and_deny_beats_allow() {
    let mut p = RulePolicy::parse(
        "[[rule]]\nid = \"no-writes\"\ndecision = \"deny\"\ntool = \"write_file\"\n",
        "p",
    )
    .unwrap();
    p.add_constraints(
        &[
            Constraint {
                kind: ConstraintKind::Allow,
                target: "write_file".into(),
            },
            Constraint {
                kind: ConstraintKind::Deny,
                target: "evil.example".into(),
            },
            Constraint {
                kind: ConstraintKind::Allow,
                target: "http_get".into(),
            },
            Constraint {
                kind: ConstraintKind::Deny,
                target: "/srv/private/".into(),
            },
        ],
        TOOLS,
    )
    .unwrap();
    let w = Subject::tool("write_file", [Effect::Write], Mode::Agent);
    assert_eq!(decide(&p, &w), (Decision::Deny, "no-writes".into()));
    let g = Subject::tool("http_get", [Effect::Network], Mode::Prompt);
    assert_eq!(
        decide(&p, &g),
        (Decision::Allow, "session:allow http_get".into())
    );
    let hop = Subject::fetch("https://evil.example/", "evil.example", None);
    assert_eq!(p.check(&hop).decision, Decision::Deny);
    let r = Subject::tool("read_file", [Effect::Read], Mode::Chat)
        .with_path(Path::new("/srv/private/a.txt"));
    assert_eq!(p.check(&r).decision, Decision::Deny);
}

#[test]
fn safe_mode_beats_every_user_rule() {
    let mut p = RulePolicy::parse(
        "[[rule]]\ndecision = \"allow\"\ntool = \"http_get\"\n[[rule]]\ndecision = \"allow\"\non = \"send\"\nlocality = \"remote\"\n",
        "p",
    )
    .unwrap();
    p.set_safe(true);
    assert!(p.safe());
    let g = Subject::tool("http_get", [Effect::Network], Mode::Agent);
    assert_eq!(decide(&p, &g), (Decision::Deny, "safe:no-network".into()));
    let send = Subject::send(
        "openai",
        "api.openai.com",
        Locality::Remote,
        DataClass::Internal,
    );
    assert_eq!(
        decide(&p, &send),
        (Decision::Deny, "safe:local-only".into())
    );
    let local = Subject::send("ollama", "127.0.0.1", Locality::Local, DataClass::Secret);
    assert_eq!(p.check(&local).decision, Decision::Allow);
    assert_eq!(
        p.check(&Subject::spawn("files", "npx")).decision,
        Decision::Deny
    );
    let p = RulePolicy::parse("[policy]\nsafe = true\n", "p").unwrap();
    assert!(p.safe());
}

#[test]
fn files_get_classes_from_path_rules() {
    let p = RulePolicy::parse_with_home(
        "[[classify]]\nid = \"payroll\"\npath = \"~/payroll/\"\nclass = \"personal\"\n",
        "p",
        Some(Path::new("/home/u")),
    )
    .unwrap();
    for secret in [
        "/home/u/.ssh/id_ed25519",
        "/w/app/.env",
        "/w/app/.env.production",
        "/home/u/.aws/credentials",
        "/w/tls/server.pem",
        "/w/id_rsa",
    ] {
        assert_eq!(
            p.classify_path(Path::new(secret)).class,
            DataClass::Secret,
            "{secret}"
        );
    }
    assert_eq!(
        p.classify_path(Path::new("/home/u/payroll/2026.csv")).rule,
        "payroll"
    );
    assert_eq!(
        p.classify_path(Path::new("/w/src/main.rs")).class,
        DataClass::Internal
    );
    let _ = Action::ALL;
}

#[test]
fn the_example_in_docs_policy_md_loads() {
    let doc = include_str!("../../../../docs/policy.md");
    let start = doc.find("```toml\n").unwrap() + "```toml\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let p =
        RulePolicy::parse_with_home(&doc[start..end], "docs", Some(Path::new("/home/me"))).unwrap();
    p.check_tools(TOOLS).unwrap();
    let paste = Subject::fetch("https://x.pastebin.com/", "x.pastebin.com", None);
    assert_eq!(
        decide(&p, &paste),
        (Decision::Deny, "no-paste-sites".into())
    );
    let docs = Subject::fetch("http://localhost:8000/", "localhost", Some("loopback"))
        .with_host("localhost", Some(8000));
    assert_eq!(decide(&p, &docs), (Decision::Allow, "local-docs".into()));
    assert_eq!(
        p.classify_path(Path::new("/home/me/payroll/may.csv")).class,
        DataClass::Personal
    );
}

#[test]
fn guards_are_floors_not_deciders() {
    let mut p = RulePolicy::defaults();
    p.add_constraints(
        &[Constraint {
            kind: ConstraintKind::Allow,
            target: "write_file".into(),
        }],
        TOOLS,
    )
    .unwrap();
    // A tainted turn asks before a write, even one a rule allows…
    let agent = Subject::tool("write_file", [Effect::Write], Mode::Agent).tainted(true);
    assert_eq!(
        decide(&p, &agent),
        (Decision::Ask, "guard:tainted-turn-asks-write".into())
    );
    // …but never turns a denied write into a question.
    let prompt = Subject::tool("write_file", [Effect::Write], Mode::Prompt).tainted(true);
    assert_eq!(
        decide(&p, &prompt),
        (Decision::Ask, "guard:tainted-turn-asks-write".into()),
        "the session allows it, the guard still asks"
    );
    let p = RulePolicy::defaults();
    assert_eq!(
        decide(&p, &prompt),
        (Decision::Deny, "default:prompt-never-writes".into())
    );
    // Reads are never held up by taint.
    let read = Subject::tool("read_file", [Effect::Read], Mode::Agent).tainted(true);
    assert_eq!(p.check(&read).decision, Decision::Allow);
}
