//! Text from the model, from tools and from remote people, made safe to print.
//!
//! A terminal obeys the control sequences in what it is given: an answer containing
//! `ESC ] 52 ; c ; …` sets the clipboard, and `\r ESC[2K ESC[1A` erases a line and moves up, so
//! an approval question for `sudo id` can be made to read `ls -la`. Unicode's explicit
//! direction controls (U+202A–U+202E, U+2066–U+2069) reorder what follows them in terminals that
//! implement bidi, the "Trojan Source" trick. Everything `talaria` prints that it did not write
//! itself goes through [`safe`] (answers, streamed text, tool summaries, notices, errors that may
//! quote a provider) or, for a command someone is asked to approve, [`quoted`]. Commands that
//! print stored text — sessions, skills (an agent-written skill waiting for review is exactly
//! where a hidden line would pay), memory — print every line through `say!`.
//!
//! Escaping happens whether or not the output is a terminal: a pipe usually ends at one
//! (`talaria chat -q … | head`, `| tee log`, `| less -R`), and a control character is never
//! part of what an answer means. Newline and tab are kept, so ordinary text, Unicode and emoji
//! print unchanged; the exact text is always in the session store (`talaria sessions export`).

use std::borrow::Cow;

/// `println!` for a line that carries stored text (answers, tool output, a remote person's
/// message, an agent-written skill or memory): the whole line is printed [`safe`].
macro_rules! say {
    ($($arg:tt)*) => {
        println!("{}", $crate::terminal::safe(&format!($($arg)*)))
    };
}
pub(crate) use say;

/// Whether `c` must not reach a terminal raw: a C0 control other than newline and tab, DEL, a
/// C1 control, or an explicit bidi embedding, override or isolate. (The invisible bidi *marks*
/// LRM, RLM and ALM stay: they reorder nothing by themselves and right-to-left text needs them.)
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{8}' | '\u{b}'..='\u{1f}' | '\u{7f}'..='\u{9f}'
        | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `c` as an escape a person can read: `\r`, `\u{1b}`, `\u{202e}`.
fn escape(c: char, out: &mut String) {
    for e in c.escape_debug() {
        out.push(e);
    }
}

/// `text` with every control character but newline and tab, and every bidi embedding, override
/// and isolate, replaced by a visible escape (`\u{1b}`). Text without any is returned as it is.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_unsafe(c) {
            escape(c, &mut out);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A command as an approval question shows it: in double quotes, with `"` and `\` escaped and
/// every character that does not print as itself shown as an escape — controls (newline and tab
/// included, so a second line cannot hide), format characters such as zero-width spaces and
/// bidi marks, spaces other than U+0020, combining marks, unassigned and private-use code
/// points. What the person reads is exactly what will run.
pub fn quoted(command: &str) -> String {
    let mut out = String::with_capacity(command.len() + 2);
    out.push('"');
    for c in command.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' ' | '\'' => out.push(c),
            // `escape_debug` leaves exactly the graphic characters (Unicode's printable set,
            // grapheme extenders excluded) as themselves.
            c if c.escape_debug().len() > 1 => escape(c, &mut out),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_text_is_unchanged() {
        let text = "Résumé: naïve café — 日本語, עברית, العربية 👩‍💻👍🏽 ✓\n\tindented\n";
        assert!(matches!(safe(text), Cow::Borrowed(_)));
        assert_eq!(safe(text), text);
    }

    #[test]
    fn escapes_become_visible() {
        assert_eq!(
            safe("copied\u{1b}]52;c;cHduZWQ=\u{7}"),
            "copied\\u{1b}]52;c;cHduZWQ=\\u{7}"
        );
        assert_eq!(
            safe("sudo id\r\u{1b}[2K\u{1b}[1Als -la"),
            "sudo id\\r\\u{1b}[2K\\u{1b}[1Als -la"
        );
        // C1 CSI, DEL, NUL, backspace; and the bidi override and isolates.
        assert_eq!(
            safe("a\u{9b}2Jb\u{7f}\u{0}\u{8}"),
            "a\\u{9b}2Jb\\u{7f}\\0\\u{8}"
        );
        assert_eq!(
            safe("txt.\u{202e}exe.sh\u{2066}x\u{2069}"),
            "txt.\\u{202e}exe.sh\\u{2066}x\\u{2069}"
        );
        // Right-to-left marks stay.
        assert_eq!(safe("a\u{200f}b"), "a\u{200f}b");
    }

    #[test]
    fn quoted_commands_show_every_hidden_character() {
        assert_eq!(quoted("ls -la 'my dir'"), "\"ls -la 'my dir'\"");
        assert_eq!(
            quoted("sudo id\r\u{1b}[2K\u{1b}[1Als -la"),
            "\"sudo id\\r\\u{1b}[2K\\u{1b}[1Als -la\""
        );
        assert_eq!(
            quoted("echo \"a\\b\"\nrm -rf ~"),
            "\"echo \\\"a\\\\b\\\"\\nrm -rf ~\""
        );
        // Zero-width space, a no-break space, an RLM and an override: all lookalikes.
        assert_eq!(
            quoted("r\u{200b}m\u{a0}-rf\u{200f}\u{202e}"),
            "\"r\\u{200b}m\\u{a0}-rf\\u{200f}\\u{202e}\""
        );
        assert_eq!(quoted("echo 日本 ✓"), "\"echo 日本 ✓\"");
    }
}
