//! stdout for answers and listings. A reader that goes away (`pai … | head`) is not an
//! error worth a panic or a message: PAI stops quietly, as command-line tools do.

use std::io::Write;

/// Writes `text` to stdout; exits quietly if the reader has gone.
pub fn write(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(1);
    }
}

/// Writes `text` to stdout and flushes it, reporting failure to the caller (a turn that
/// must record why it ended early).
pub fn try_write(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes()).and_then(|()| out.flush())
}

/// `println!` for stdout that survives a closed pipe.
macro_rules! outln {
    () => {
        $crate::output::write("\n")
    };
    ($($arg:tt)*) => {
        $crate::output::write(&format!("{}\n", format_args!($($arg)*)))
    };
}
