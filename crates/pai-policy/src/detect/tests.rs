use super::*;
use pretty_assertions::assert_eq;

fn kinds(text: &str) -> Vec<(&'static str, String)> {
    scan(text)
        .into_iter()
        .map(|f| (f.kind, text[f.start..f.end].to_string()))
        .collect()
}

/// A small deterministic generator (xorshift), so the recall test is the same every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The characters of a class body such as `A-Za-z0-9_-`.
fn class(body: &str) -> Vec<char> {
    let c: Vec<char> = body.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if i + 2 < c.len() && c[i + 1] == '-' {
            out.extend(c[i]..=c[i + 2]);
            i += 3;
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// `template` with each `{{CLASS:N}}` replaced by N random characters from CLASS.
fn expand(template: &str, rng: &mut Rng) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let close = rest[open..].find("}}").expect("unclosed {{") + open;
        let (body, n) = rest[open + 2..close].rsplit_once(':').expect("{{CLASS:N}}");
        let chars = class(body);
        for _ in 0..n.parse::<usize>().expect("a count") {
            out.push(chars[(rng.next() % chars.len() as u64) as usize]);
        }
        rest = &rest[close + 2..];
    }
    out.push_str(rest);
    out
}

#[test]
fn the_rule_file_parses_and_every_rule_compiles_with_keywords_and_a_sample() {
    let set = secrets::set().expect("rules.toml parses");
    let mut ids = std::collections::BTreeSet::new();
    for rule in &set.rules {
        assert!(rule.regex().is_some(), "{} does not compile", rule.def.id);
        assert!(
            !rule.def.keywords.is_empty(),
            "{} has no keyword",
            rule.def.id
        );
        assert!(rule.def.sample.is_some(), "{} has no sample", rule.def.id);
        assert!(ids.insert(rule.def.id.clone()), "{} twice", rule.def.id);
        assert!(!rule.def.regex.contains("{ASSIGN}") && !rule.def.regex.contains("{END}"));
    }
    assert!(set.rules.len() >= 60, "{} rules", set.rules.len());
}

/// Recall: every rule finds fakes generated from its sample template, 25 each, and so
/// does the whole scanner (the same kind, covering the generated value).
#[test]
fn every_rule_finds_generated_fakes_of_its_format() {
    let set = secrets::set().expect("rules.toml parses");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut missed = Vec::new();
    let mut total = 0;
    for rule in &set.rules {
        let Some(template) = &rule.def.sample else {
            continue;
        };
        // Every keyword must be able to fire: the sample contains one of them.
        for _ in 0..25 {
            let text = expand(template, &mut rng);
            total += 1;
            let found = scan(&text);
            if !found.iter().any(|f| f.kind == rule.def.kind) {
                missed.push(format!("{}: {text:?} -> {found:?}", rule.def.id));
            }
        }
    }
    assert!(
        missed.is_empty(),
        "missed {} of {total}:\n{}",
        missed.len(),
        missed.join("\n")
    );
}

#[test]
fn finds_keys_blocks_assignments_and_emails() {
    let key = "AKIAQ3EGRJ7MNOZ4V5XA";
    let text = format!(
        "my key is {key} and mail me at ana.silva@mail.pt\npassword = hunter2hunter2\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n"
    );
    let found = kinds(&text);
    assert_eq!(found[0], ("AWS_KEY", key.to_string()));
    assert_eq!(found[1], ("EMAIL", "ana.silva@mail.pt".to_string()));
    assert_eq!(found[2], ("PASSWORD", "hunter2hunter2".to_string()));
    assert_eq!(found[3].0, "PRIVATE_KEY");
    assert_eq!(found.len(), 4);
}

#[test]
fn the_cli_suites_planted_values_keep_their_kinds() {
    let text = "deploy with token ghp_4Xk9LmQ2sT7vWz1YbN8cR5dF3gH6jK0pA2e1 on friday\nDATABASE_URL=postgres://app@db/app\nDB_PASS=s3cr3t-db-pa55w0rd-2026\n";
    let found = kinds(text);
    assert_eq!(
        found,
        vec![
            (
                "GITHUB_TOKEN",
                "ghp_4Xk9LmQ2sT7vWz1YbN8cR5dF3gH6jK0pA2e1".to_string()
            ),
            ("PASSWORD", "s3cr3t-db-pa55w0rd-2026".to_string()),
        ]
    );
}

#[test]
fn documented_examples_placeholders_and_code_are_not_findings() {
    for text in [
        "AKIAIOSFODNN7EXAMPLE user@example.com password=xxxxxxxxxx",
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        "fn main() { let x = 1; }",
        "api_key = \"${OPENAI_API_KEY}\"",
        "token: <your-token-here>",
        "password = changeme123",
        "OPENAI_API_KEY=your_key_here",
        "let password = read_password()?;",
        "password: Option<String>,",
        "password = config.password",
        "fn check(token: &str, secret: String) -> bool",
        "token = self.tokens.next()",
        "secret_key = os.environ[\"SECRET_KEY\"]",
        "postgres://user:${DB_PASSWORD}@db/app",
        "Authorization: Bearer \u{27e8}TOKEN_1\u{27e9}",
        "sk-proj-...",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn a_complete_key_block_wins_and_a_truncated_one_stops_at_its_body() {
    let block = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n-----END OPENSSH PRIVATE KEY-----";
    let text = format!("{block}\ncontact: ana.silva@mail.pt\n");
    let found = scan(&text);
    assert_eq!(
        (found[0].rule, &text[found[0].start..found[0].end]),
        ("private-key", block)
    );
    assert_eq!(found[1].kind, "EMAIL");
    let cut = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIEpAIBAAKCAQEAx4Zb2kLq9Vt\nnote: the rest is lost";
    let found = scan(cut);
    assert_eq!(found.len(), 1);
    assert_eq!(
        &cut[found[0].start..found[0].end],
        &cut[..cut.find("\nnote").unwrap()]
    );
}

#[test]
fn credentials_in_urls_keep_the_rest_of_the_url() {
    let text = "DATABASE_URL=postgres://app:Zq8vN2xLp0sKt4@db.internal:5432/app";
    assert_eq!(
        kinds(text),
        vec![("PASSWORD", "Zq8vN2xLp0sKt4".to_string())]
    );
}

#[test]
fn entropy_is_bits_per_byte() {
    assert_eq!(secrets::entropy(b"aaaa"), 0.0);
    assert_eq!(secrets::entropy(b"abcd"), 2.0);
}

// ---------------------------------------------------------------- personal data

#[test]
fn cards_need_a_valid_luhn_digit_and_a_network() {
    for card in [
        "4111 1111 1111 1111",
        "5555-5555-5555-4444",
        "378282246310005",
        "6011111111111117",
    ] {
        assert_eq!(
            kinds(&format!("card: {card}.")),
            vec![("CARD", card.to_string())],
            "{card}"
        );
    }
    // Luhn fails; no network; a 13-digit timestamp; mixed separators.
    for text in [
        "4111 1111 1111 1112",
        "9111111111111111",
        "1700000000000",
        "4111 1111-1111 1111",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
    assert!(personal::luhn(&[7, 9, 9, 2, 7, 3, 9, 8, 7, 1, 3]));
}

#[test]
fn ibans_need_their_country_length_and_mod_97() {
    for iban in [
        "GB82 WEST 1234 5698 7654 32",
        "DE89370400440532013000",
        "PT50000201231234567890154",
    ] {
        assert_eq!(
            kinds(&format!("IBAN {iban}")),
            vec![("IBAN", iban.to_string())],
            "{iban}"
        );
    }
    for text in [
        "GB82 WEST 1234 5698 7654 33",
        "DE8937040044053201300",
        "ZZ89370400440532013000",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn ssns_in_issued_ranges_only() {
    assert_eq!(
        kinds("SSN 536-22-1234"),
        vec![("SSN", "536-22-1234".to_string())]
    );
    for text in [
        "000-12-3456",
        "666-12-3456",
        "912-12-3456",
        "536-00-1234",
        "536-22-0000",
        "123-45-6789",
        "2024-01-15",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn ninos_follow_the_prefix_rules() {
    assert_eq!(
        kinds("NI: AB123456C"),
        vec![("NINO", "AB123456C".to_string())]
    );
    assert_eq!(
        kinds("NI: JK 12 34 56 D"),
        vec![("NINO", "JK 12 34 56 D".to_string())]
    );
    for text in ["QQ123456C", "GB123456A", "AB123456E", "AO123456C"] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn phones_in_international_and_common_national_formats() {
    for phone in [
        "+351 912 345 678",
        "+1 (415) 867-5309",
        "+447700900123",
        "(415) 867-5309",
        "415-867-5309",
        "020 7946 0958",
        "07700 900123",
    ] {
        assert_eq!(
            kinds(&format!("call {phone} today")),
            vec![("PHONE", phone.to_string())],
            "{phone}"
        );
    }
    for text in [
        "(415) 555-0134",
        "2024-01-15",
        "version 1.2.3",
        "x = 1 + 2",
        "+12",
        "call 12345",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn public_ip_addresses_only() {
    assert_eq!(
        kinds("from 84.91.2.17 at"),
        vec![("IP", "84.91.2.17".to_string())]
    );
    assert_eq!(
        kinds("host 2a00:1450:4001:81b::200e up"),
        vec![("IP", "2a00:1450:4001:81b::200e".to_string())]
    );
    for text in [
        "127.0.0.1",
        "10.0.0.8",
        "192.168.1.1",
        "192.0.2.10",
        "::1",
        "fe80::1",
        "2001:db8::1",
        "std::fs::read",
        "12:30:45",
        "1.2.3.4.5",
        "v1.20.3.4",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn emails_but_not_file_names_or_url_credentials() {
    assert_eq!(
        kinds("write to ana.silva@mail.pt."),
        vec![("EMAIL", "ana.silva@mail.pt".to_string())]
    );
    for text in [
        "icon@2x.png",
        "git@github.com:org/repo",
        "https://user@host.com/x",
        "a@b",
        "user@example.org",
        "@decorator",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
}

#[test]
fn a_secret_wins_over_an_overlapping_personal_value() {
    let text = "smtp://mailer:p4ss-w0rd-x9@mail.acme.io";
    assert_eq!(kinds(text), vec![("PASSWORD", "p4ss-w0rd-x9".to_string())]);
}

#[test]
fn findings_never_split_a_character() {
    let text = "password=ünïcødé-p4ss-wörd-1234 ✓";
    for f in scan(text) {
        assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
    }
}

#[test]
fn slack_placeholders_and_lookalikes_are_not_tokens() {
    // From gitleaks' false-positive samples for its Slack rules (MIT).
    for text in [
        "xoxb-12345-abcd234",
        "xoxb-xoxb-my-bot-token",
        "xoxe.xoxp-1-SlackAppConfigurationAccessTokenHere",
        "xoxb-abcdef-abcdef",
        "https://indieweb.org/images/3/35/2018-250-xoxo-indieweb-1.jpg",
    ] {
        assert_eq!(kinds(text), vec![], "{text}");
    }
    let real = "xoxb-263591027748-4410236857136-q7Rt2mXk9LpZ4vBn8cWs3HdY";
    assert_eq!(kinds(real), vec![("SLACK_TOKEN", real.to_string())]);
}

#[test]
fn many_short_parts_build_the_keyword_automaton_instead_of_a_pass_per_keyword_each() {
    // A request of a hundred short history messages made a pass per keyword (263 of them)
    // over each: 3 ms for 100 messages, 8 ms for 300, where the automaton costs about
    // half a millisecond once. The pass's set-up is now counted, so a few dozen short
    // parts go keyword by keyword and the rest through the automaton.
    let short = secrets::naive_texts(110);
    assert!((5..60).contains(&short), "{short} short texts");
    // One ordinary prompt (4 KB) is still searched without building the automaton.
    assert!(secrets::naive_texts(4096) >= 1);
    // And the answer is the same either way.
    let text = format!(
        "{}\nexport AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLQ",
        "the capital of France. ".repeat(5)
    );
    let first = kinds(&text);
    assert!(!first.is_empty(), "{first:?}");
    for _ in 0..200 {
        assert_eq!(kinds(&text), first);
    }
}
