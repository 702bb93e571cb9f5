//! The non-interactive PAM conversation: answers prompts from the login form.

use std::ffi::{CStr, CString};
use std::fmt;

use pam_client2::{ConversationHandler, ErrorCode};

use crate::redact::{Secret, loggable};

/// Messages kept from PAM modules (for the log), and how long each may be.
const MAX_MESSAGES: usize = 4;
const MAX_MESSAGE_BYTES: usize = 200;

/// Answers visible prompts with the username and hidden prompts with the password. Messages
/// from modules (e.g. "Your account has expired") are kept, bounded, for the log.
pub(crate) struct FormConversation {
    username: String,
    password: Secret,
    messages: Vec<String>,
}

impl FormConversation {
    pub(crate) fn new(username: &str, password: Secret) -> Self {
        Self {
            username: username.to_owned(),
            password,
            messages: Vec::new(),
        }
    }

    /// Forgets the password once authentication is over: later steps must not need it.
    pub(crate) fn forget_password(&mut self) {
        self.password.wipe();
    }

    /// What modules said, as one loggable line ("" when nothing).
    pub(crate) fn messages(&self) -> String {
        self.messages.join("; ")
    }

    fn keep(&mut self, msg: &CStr) {
        if self.messages.len() >= MAX_MESSAGES {
            return;
        }
        let text = msg.to_string_lossy();
        let mut end = text.len().min(MAX_MESSAGE_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        // Module messages may echo the username: escape them like any untrusted text.
        let cut = &text[..end];
        let shown: String = cut.escape_debug().collect();
        self.messages.push(if shown.len() > 2 * MAX_MESSAGE_BYTES {
            loggable(cut)
        } else {
            shown
        });
    }
}

impl fmt::Debug for FormConversation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormConversation")
            .field("username", &loggable(&self.username))
            .field("password", &self.password)
            .field("messages", &self.messages.len())
            .finish()
    }
}

impl ConversationHandler for FormConversation {
    fn prompt_echo_on(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        CString::new(self.username.as_bytes()).map_err(|_| ErrorCode::CONV_ERR)
    }

    fn prompt_echo_off(&mut self, _prompt: &CStr) -> Result<CString, ErrorCode> {
        if self.password.expose().is_empty() {
            // Empty passwords never get here: a module asks again after authentication.
            return Err(ErrorCode::CONV_ERR);
        }
        CString::new(self.password.expose().as_bytes()).map_err(|_| ErrorCode::CONV_ERR)
    }

    fn text_info(&mut self, msg: &CStr) {
        self.keep(msg);
    }

    fn error_msg(&mut self, msg: &CStr) {
        self.keep(msg);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn answers_and_redacts() {
        let mut c = FormConversation::new("alice", Secret::new("s3cret-pw".into()));
        assert_eq!(c.prompt_echo_on(c"login: ").unwrap().to_bytes(), b"alice");
        assert_eq!(
            c.prompt_echo_off(c"Password: ").unwrap().to_bytes(),
            b"s3cret-pw"
        );
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        c.forget_password();
        assert!(c.prompt_echo_off(c"Password: ").is_err());
    }

    #[test]
    fn messages_are_bounded() {
        let mut c = FormConversation::new("a", Secret::new("p".into()));
        let long = CString::new("x\n".repeat(10_000)).unwrap();
        for _ in 0..10 {
            c.error_msg(&long);
        }
        let all = c.messages();
        assert!(
            all.len() <= MAX_MESSAGES * (2 * MAX_MESSAGE_BYTES + 2),
            "{}",
            all.len()
        );
        assert!(!all.contains('\n'));
    }
}
