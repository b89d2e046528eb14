use std::io::{BufRead, IsTerminal, Write};

use pai_core::{Approval, ApprovalRequest, Approver};

/// Asks on the terminal before a write or exec tool runs; refuses when there is no
/// terminal to ask on (a script, a pipe, CI), so nothing changes unattended unless the
/// user passed `--allow`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TerminalApprover;

#[async_trait::async_trait]
impl Approver for TerminalApprover {
    async fn approve(&self, request: &ApprovalRequest) -> Approval {
        let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
        if !interactive {
            if request.tool == "send" {
                // The refused call ends the command with its own error line, naming the rule.
                return Approval::No;
            }
            let target = request
                .target
                .as_deref()
                .map(|t| format!(" {t}"))
                .unwrap_or_default();
            eprintln!(
                "refused {}{target}: {} (rule {}), and there is no terminal to ask; {}",
                request.tool,
                request.reason,
                request.rule,
                how_to_allow(request)
            );
            return Approval::No;
        }
        ask(
            request,
            &mut std::io::stdin().lock(),
            &mut std::io::stderr(),
        )
    }
}

fn effects(request: &ApprovalRequest) -> String {
    request
        .effects
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// The one flag (or session rule) that would let this call run unattended.
fn how_to_allow(request: &ApprovalRequest) -> String {
    let host = request
        .target
        .as_deref()
        .and_then(pai_tools::url_host)
        .map(|(host, _)| host);
    match host {
        Some(host) => format!(
            "allow the host for this session with 'pai <session> allow {host}' (or pass --allow {})",
            effects(request)
        ),
        None => format!("pass --allow {} to permit it", effects(request)),
    }
}

/// `text` cut in the middle to about `max` bytes, so both ends stay visible.
fn elide_middle(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut head = max * 2 / 3;
    while !text.is_char_boundary(head) {
        head -= 1;
    }
    let mut tail = text.len() - (max - head);
    while !text.is_char_boundary(tail) {
        tail += 1;
    }
    format!(
        "{}…[{} bytes]…{}",
        &text[..head],
        tail - head,
        &text[tail..]
    )
}

/// The question and the answer, on any reader and writer (so it can be tested). The
/// target (path, URL) comes first and in full; long arguments are cut in the middle.
pub fn ask(request: &ApprovalRequest, input: &mut impl BufRead, out: &mut impl Write) -> Approval {
    let args = elide_middle(&request.arguments, 400);
    let target = request
        .target
        .as_deref()
        .map(|t| format!(" {t}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{}{target}\n  asked because: {} (rule {})\n  arguments: {args}",
        request.tool, request.reason, request.rule
    );
    loop {
        let _ = write!(
            out,
            "allow {} ({})? [y]es / [n]o / [a]lways for this session: ",
            request.tool,
            effects(request)
        );
        let _ = out.flush();
        let mut line = String::new();
        match input.read_line(&mut line) {
            Ok(0) | Err(_) => return Approval::No,
            Ok(_) => {}
        }
        match line.trim().to_ascii_lowercase().as_str() {
            "y" | "yes" => return Approval::Yes,
            "n" | "no" | "" => return Approval::No,
            "a" | "always" => return Approval::Always,
            _ => {
                let _ = writeln!(out, "please answer y, n or a");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use pai_tools::Effect;

    use super::*;

    fn request() -> ApprovalRequest {
        ApprovalRequest {
            tool: "write_file".into(),
            arguments: r#"{"path":"notes.txt"}"#.into(),
            effects: BTreeSet::from([Effect::Write]),
            target: Some("/work/notes.txt".into()),
            rule: "default:agent-asks-to-write".into(),
            reason: "agent mode asks before a tool changes files".into(),
        }
    }

    #[test]
    fn answers_map_to_approvals_and_the_question_names_the_call() {
        for (typed, expected) in [
            ("y\n", Approval::Yes),
            ("yes\n", Approval::Yes),
            ("n\n", Approval::No),
            ("\n", Approval::No),
            ("a\n", Approval::Always),
            ("maybe\ny\n", Approval::Yes),
            ("", Approval::No),
        ] {
            let mut out = Vec::new();
            let got = ask(&request(), &mut typed.as_bytes(), &mut out);
            assert_eq!(got, expected, "{typed:?}");
            let shown = String::from_utf8(out).unwrap();
            assert!(
                shown.starts_with("write_file /work/notes.txt\n  asked because: agent mode asks before a tool changes files (rule default:agent-asks-to-write)\n  arguments: {\"path\":\"notes.txt\"}\nallow write_file (write)?"),
                "{shown}"
            );
        }
    }

    #[test]
    fn long_arguments_are_cut_in_the_middle_and_the_target_stays_whole() {
        let url = format!("https://evil.example/{}", "x".repeat(300));
        let mut r = request();
        r.tool = "http_get".into();
        r.arguments = format!(r#"{{"url":"{url}","note":"{}"}}"#, "y".repeat(2000));
        r.target = Some(url.clone());
        let mut out = Vec::new();
        ask(&r, &mut "n\n".as_bytes(), &mut out);
        let shown = String::from_utf8(out).unwrap();
        assert!(shown.starts_with(&format!("http_get {url}\n")), "{shown}");
        let args = shown.lines().nth(2).unwrap();
        assert!(
            args.len() < 500 && args.contains("bytes]…") && args.ends_with("y\"}"),
            "{args}"
        );
        assert!(how_to_allow(&r).contains("pai <session> allow evil.example"));
    }
}
