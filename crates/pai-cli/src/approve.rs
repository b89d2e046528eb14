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
            eprintln!(
                "refused {}: it needs approval and there is no terminal to ask (pass --allow {} to permit it)",
                request.tool,
                effects(request)
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

/// The question and the answer, on any reader and writer (so it can be tested).
pub fn ask(request: &ApprovalRequest, input: &mut impl BufRead, out: &mut impl Write) -> Approval {
    let args = if request.arguments.len() > 400 {
        let mut cut = 400;
        while !request.arguments.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}…", &request.arguments[..cut])
    } else {
        request.arguments.clone()
    };
    loop {
        let _ = write!(
            out,
            "allow {} ({}) with {args}? [y]es / [n]o / [a]lways for this session: ",
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
                shown.contains("allow write_file (write) with {\"path\":\"notes.txt\"}?"),
                "{shown}"
            );
        }
    }
}
