//! NATS subjects for `wasmcloud:messaging`: the grammar of subjects and patterns, the matcher
//! with NATS wildcard semantics, and the sets of granted patterns a guest may publish to.
//!
//! - A **subject** is 1..=[`MAX_SUBJECT_BYTES`] bytes of printable ASCII (`!`..=`~`), split by
//!   `.` into non-empty tokens. A literal subject has no wildcard token.
//! - A **pattern** may have tokens that are exactly `*` (any one token) or `>` (one or more
//!   tokens; last token only). `*` or `>` inside a longer token (`a*`, `x>`) is refused.
//! - A subject or pattern is **reserved** when its first token is `weft` (the lattice's control
//!   subjects), starts with `$` (`$JS`, `$KV`, `$SYS`: JetStream and the server) or is
//!   `_INBOX` (reply inboxes). A granted pattern must start with a literal, unreserved token, so
//!   no grant can reach a reserved subject.
//!
//! Everything here is pure and total over arbitrary input (see `fuzz/fuzz_targets/subjects.rs`).

use std::fmt;

/// Longest subject or pattern accepted, in bytes.
pub const MAX_SUBJECT_BYTES: usize = 1024;
/// Longest queue-group name accepted, in bytes.
pub const MAX_QUEUE_GROUP_BYTES: usize = 255;

/// Why a subject, pattern or queue group is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("is empty")]
    Empty,
    #[error("is {0} bytes long; the limit is {MAX_SUBJECT_BYTES}")]
    TooLong(usize),
    #[error("has an empty token (a leading, trailing or doubled `.`)")]
    EmptyToken,
    #[error("contains {0:?}; subjects are printable ASCII without spaces")]
    BadChar(char),
    #[error("a wildcard must be a whole token (`*` or `>` between dots)")]
    PartialWildcard,
    #[error("`>` must be the last token")]
    InnerTail,
    #[error("is a pattern (has `*` or `>`); a literal subject is needed here")]
    Wildcard,
    #[error(
        "starts with `{0}`, which is reserved (the lattice's `weft.`, the server's `$...`, reply inboxes `_INBOX.`)"
    )]
    Reserved(String),
    #[error(
        "starts with a wildcard, so it could reach reserved subjects (`weft.`, `$...`, `_INBOX.`)"
    )]
    LeadingWildcard,
    #[error("is {0} bytes long; a queue group name is at most {MAX_QUEUE_GROUP_BYTES}")]
    QueueGroupTooLong(usize),
    #[error("contains a wildcard; a queue group is a plain name")]
    QueueGroupWildcard,
}

fn check_chars(s: &str) -> Result<(), SubjectError> {
    if s.is_empty() {
        return Err(SubjectError::Empty);
    }
    if s.len() > MAX_SUBJECT_BYTES {
        return Err(SubjectError::TooLong(s.len()));
    }
    if let Some(c) = s.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(SubjectError::BadChar(c));
    }
    Ok(())
}

/// Checks the shape of a pattern (wildcards allowed), not whether it is reserved.
fn check_pattern_shape(s: &str) -> Result<(), SubjectError> {
    check_chars(s)?;
    let count = s.split('.').count();
    for (i, token) in s.split('.').enumerate() {
        if token.is_empty() {
            return Err(SubjectError::EmptyToken);
        }
        match token {
            "*" => {}
            ">" if i + 1 == count => {}
            ">" => return Err(SubjectError::InnerTail),
            t if t.contains(['*', '>']) => return Err(SubjectError::PartialWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `s`'s first token is reserved. Total: any text.
pub fn is_reserved(s: &str) -> bool {
    let first = s.split('.').next().unwrap_or("");
    first == "weft" || first == "_INBOX" || first.starts_with('$')
}

/// Validates a literal subject a guest publishes to or requests on (no wildcards). Reserved
/// subjects are valid here; [`SubjectGrants::allows`] refuses them.
pub fn check_subject(s: &str) -> Result<(), SubjectError> {
    check_pattern_shape(s)?;
    if s.split('.').any(|t| t == "*" || t == ">") {
        return Err(SubjectError::Wildcard);
    }
    Ok(())
}

/// Validates a literal subject named in a manifest (`deadLetter`): a valid subject, not reserved.
pub fn check_grant_subject(s: &str) -> Result<(), SubjectError> {
    check_subject(s)?;
    if is_reserved(s) {
        return Err(SubjectError::Reserved(first_token(s).to_string()));
    }
    Ok(())
}

fn first_token(s: &str) -> &str {
    s.split('.').next().unwrap_or("")
}

/// A validated pattern that may be granted: valid shape, first token a literal and not
/// reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern(String);

impl Pattern {
    /// Parses a granted pattern (`subscriptions`, `publish`).
    pub fn parse(s: &str) -> Result<Pattern, SubjectError> {
        check_pattern_shape(s)?;
        let first = first_token(s);
        if first == "*" || first == ">" {
            return Err(SubjectError::LeadingWildcard);
        }
        if is_reserved(s) {
            return Err(SubjectError::Reserved(first.to_string()));
        }
        Ok(Pattern(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the pattern has no wildcard (matches exactly one subject).
    pub fn is_literal(&self) -> bool {
        !self.0.split('.').any(|t| t == "*" || t == ">")
    }

    /// Whether `subject` (any text) matches this pattern with NATS semantics. A subject that is
    /// not a valid literal subject matches nothing.
    pub fn matches(&self, subject: &str) -> bool {
        check_subject(subject).is_ok() && tokens_match(&self.0, subject)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Token-by-token match of a (shape-valid) pattern against a (valid, literal) subject.
pub(crate) fn tokens_match(pattern: &str, subject: &str) -> bool {
    let mut subject_tokens = subject.split('.');
    for p in pattern.split('.') {
        if p == ">" {
            // One or more tokens remain.
            return subject_tokens.next().is_some();
        }
        let Some(s) = subject_tokens.next() else {
            return false;
        };
        if p != "*" && p != s {
            return false;
        }
    }
    subject_tokens.next().is_none()
}

/// Whether a delivery pattern (possibly with wildcards, possibly reserved: the host's own
/// subscriptions) matches `subject`. Both must be shape-valid; otherwise false. Used by the
/// in-process bus, where subscriptions may include reply inboxes.
pub fn pattern_matches(pattern: &str, subject: &str) -> bool {
    check_pattern_shape(pattern).is_ok()
        && check_subject(subject).is_ok()
        && tokens_match(pattern, subject)
}

/// Where a comma-separated list of patterns went wrong: the item's index (from 0), its text and
/// the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("item {index} `{item}`: {error}")]
pub struct ListError {
    pub index: usize,
    pub item: String,
    pub error: SubjectError,
}

/// Splits a comma-separated list (`"orders.*, audit.>"`): items trimmed of ASCII spaces and
/// tabs, empty items (a stray comma) skipped.
pub fn split_list(text: &str) -> impl Iterator<Item = &str> {
    text.split(',')
        .map(|s| s.trim_matches([' ', '\t']))
        .filter(|s| !s.is_empty())
}

/// Parses a comma-separated list of granted patterns. Every error is reported.
pub fn parse_patterns(text: &str) -> Result<Vec<Pattern>, Vec<ListError>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (index, item) in split_list(text).enumerate() {
        match Pattern::parse(item) {
            Ok(p) => out.push(p),
            Err(error) => errors.push(ListError {
                index,
                item: item.to_string(),
                error,
            }),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Validates a queue group name: 1..=[`MAX_QUEUE_GROUP_BYTES`] printable ASCII bytes, no
/// wildcard characters.
pub fn check_queue_group(s: &str) -> Result<(), SubjectError> {
    if s.is_empty() {
        return Err(SubjectError::Empty);
    }
    if s.len() > MAX_QUEUE_GROUP_BYTES {
        return Err(SubjectError::QueueGroupTooLong(s.len()));
    }
    if let Some(c) = s.chars().find(|c| !('!'..='~').contains(c)) {
        return Err(SubjectError::BadChar(c));
    }
    if s.contains(['*', '>']) {
        return Err(SubjectError::QueueGroupWildcard);
    }
    Ok(())
}

/// The patterns a workload may publish to (`publish`), and the decision for one subject.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectGrants {
    patterns: Vec<Pattern>,
}

/// Why a publish was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("invalid subject `{subject}`: {error}")]
    Invalid {
        subject: String,
        error: SubjectError,
    },
    #[error("subject `{0}` is reserved")]
    Reserved(String),
    #[error("subject `{0}` is not granted")]
    NotGranted(String),
}

impl SubjectGrants {
    /// Grants exactly these patterns (none: nothing is allowed).
    pub fn new(patterns: Vec<Pattern>) -> Self {
        SubjectGrants { patterns }
    }

    /// Parses a comma-separated list, as in `config.publish`.
    pub fn parse(text: &str) -> Result<Self, Vec<ListError>> {
        parse_patterns(text).map(SubjectGrants::new)
    }

    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Decides whether a guest may publish to (or request on) `subject`: a valid literal
    /// subject, not reserved, matched by some granted pattern.
    pub fn check(&self, subject: &str) -> Result<(), Denied> {
        check_subject(subject).map_err(|error| Denied::Invalid {
            subject: subject.chars().take(120).collect(),
            error,
        })?;
        if is_reserved(subject) {
            return Err(Denied::Reserved(subject.to_string()));
        }
        if self.patterns.iter().any(|p| tokens_match(&p.0, subject)) {
            Ok(())
        } else {
            Err(Denied::NotGranted(subject.to_string()))
        }
    }

    /// [`SubjectGrants::check`] as a boolean.
    pub fn allows(&self, subject: &str) -> bool {
        self.check(subject).is_ok()
    }
}

impl fmt::Display for SubjectGrants {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.patterns.is_empty() {
            return f.write_str("(none)");
        }
        for (i, p) in self.patterns.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(p.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    /// Matching by the definition: `*` is any one token, a trailing `>` is one or more tokens,
    /// written as a recursion over token slices.
    fn reference(pattern: &[&str], subject: &[&str]) -> bool {
        match (pattern.split_first(), subject.split_first()) {
            (None, None) => true,
            (Some((&">", [])), _) => !subject.is_empty(),
            (Some((p, prest)), Some((s, srest))) => {
                (*p == "*" || p == s) && reference(prest, srest)
            }
            _ => false,
        }
    }

    fn toks(s: &str) -> Vec<&str> {
        s.split('.').collect()
    }

    #[test]
    fn subjects() {
        assert!(check_subject("orders.created").is_ok());
        assert!(check_subject("a").is_ok());
        assert!(check_subject("_INBOX.abc.1").is_ok());
        assert_eq!(check_subject(""), Err(SubjectError::Empty));
        assert_eq!(check_subject("a..b"), Err(SubjectError::EmptyToken));
        assert_eq!(check_subject(".a"), Err(SubjectError::EmptyToken));
        assert_eq!(check_subject("a."), Err(SubjectError::EmptyToken));
        assert_eq!(check_subject("a b"), Err(SubjectError::BadChar(' ')));
        assert_eq!(
            check_subject("a\r\nPUB x"),
            Err(SubjectError::BadChar('\r'))
        );
        assert_eq!(check_subject("é"), Err(SubjectError::BadChar('é')));
        assert_eq!(check_subject("a.*"), Err(SubjectError::Wildcard));
        assert_eq!(check_subject("a.>"), Err(SubjectError::Wildcard));
        assert_eq!(check_subject("a*"), Err(SubjectError::PartialWildcard));
        let long = "a".repeat(MAX_SUBJECT_BYTES + 1);
        assert_eq!(
            check_subject(&long),
            Err(SubjectError::TooLong(MAX_SUBJECT_BYTES + 1))
        );
        assert!(check_subject(&"a".repeat(MAX_SUBJECT_BYTES)).is_ok());
    }

    #[test]
    fn patterns() {
        assert!(Pattern::parse("orders.*").is_ok());
        assert!(Pattern::parse("audit.>").is_ok());
        assert!(Pattern::parse("a.*.c.>").is_ok());
        assert_eq!(Pattern::parse(">"), Err(SubjectError::LeadingWildcard));
        assert_eq!(Pattern::parse("*.x"), Err(SubjectError::LeadingWildcard));
        assert_eq!(Pattern::parse("a.>.b"), Err(SubjectError::InnerTail));
        assert_eq!(Pattern::parse("a.x>"), Err(SubjectError::PartialWildcard));
        assert_eq!(
            Pattern::parse("weft.default.http.h1"),
            Err(SubjectError::Reserved("weft".into()))
        );
        assert_eq!(
            Pattern::parse("$JS.API.>"),
            Err(SubjectError::Reserved("$JS".into()))
        );
        assert_eq!(
            Pattern::parse("_INBOX.>"),
            Err(SubjectError::Reserved("_INBOX".into()))
        );
        // Only the first token decides.
        assert!(Pattern::parse("orders.weft").is_ok());
        assert!(Pattern::parse("weftx.a").is_ok());
    }

    #[test]
    fn matching() {
        let p = |s: &str| Pattern::parse(s).unwrap();
        assert!(p("orders.*").matches("orders.created"));
        assert!(!p("orders.*").matches("orders"));
        assert!(!p("orders.*").matches("orders.a.b"));
        assert!(p("audit.>").matches("audit.a"));
        assert!(p("audit.>").matches("audit.a.b.c"));
        assert!(!p("audit.>").matches("audit"));
        assert!(p("a.*.c").matches("a.b.c"));
        assert!(!p("a.*.c").matches("a.b.d"));
        assert!(p("a.b").matches("a.b"));
        assert!(!p("a.b").matches("A.b"));
        assert!(
            !p("a.*").matches("a.*"),
            "a wildcard subject is not a subject"
        );
        assert!(!p("a.>").matches("a..b"));
        assert!(pattern_matches("_INBOX.x.>", "_INBOX.x.1"));
        assert!(pattern_matches(">", "weft.anything"));
        assert!(!pattern_matches("a.>.b", "a.x.b"));
    }

    #[test]
    fn lists_and_grants() {
        let g = SubjectGrants::parse(" orders.* ,, audit.>\t,").unwrap();
        assert_eq!(g.to_string(), "orders.*, audit.>");
        assert!(g.allows("orders.x"));
        assert!(g.allows("audit.x.y"));
        assert_eq!(g.check("out.x"), Err(Denied::NotGranted("out.x".into())));
        assert_eq!(g.check("weft.x"), Err(Denied::Reserved("weft.x".into())));
        assert!(matches!(g.check("orders.*"), Err(Denied::Invalid { .. })));
        assert!(!SubjectGrants::default().allows("orders.x"));
        let errs = parse_patterns("ok.a, bad..b, >, fine").unwrap_err();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs[0].index, 1);
        assert_eq!(errs[0].item, "bad..b");
        assert_eq!(errs[1].index, 2);
        assert_eq!(errs[1].error, SubjectError::LeadingWildcard);
    }

    #[test]
    fn queue_groups() {
        assert!(check_queue_group("default.orders").is_ok());
        assert_eq!(check_queue_group(""), Err(SubjectError::Empty));
        assert_eq!(check_queue_group("a b"), Err(SubjectError::BadChar(' ')));
        assert_eq!(
            check_queue_group("a*"),
            Err(SubjectError::QueueGroupWildcard)
        );
        assert!(check_queue_group(&"q".repeat(MAX_QUEUE_GROUP_BYTES)).is_ok());
        assert!(check_queue_group(&"q".repeat(MAX_QUEUE_GROUP_BYTES + 1)).is_err());
    }

    fn token() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "a", "b", "ab", "*", ">", "weft", "$JS", "_INBOX", "", "a b", "x*",
        ])
        .prop_map(str::to_string)
    }

    fn dotted(max: usize) -> impl Strategy<Value = String> {
        prop::collection::vec(token(), 1..max).prop_map(|t| t.join("."))
    }

    fn literal_subject() -> impl Strategy<Value = String> {
        prop::collection::vec(prop::sample::select(vec!["a", "b", "ab", "c"]), 1..6)
            .prop_map(|t| t.join("."))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// The matcher agrees with the recursive definition on every shape-valid pattern.
        #[test]
        fn matcher_agrees_with_reference(pattern in dotted(6), subject in literal_subject()) {
            if check_pattern_shape(&pattern).is_ok() {
                prop_assert_eq!(
                    pattern_matches(&pattern, &subject),
                    reference(&toks(&pattern), &toks(&subject)),
                    "{} vs {}", pattern, subject
                );
            } else {
                prop_assert!(!pattern_matches(&pattern, &subject));
            }
        }

        /// Arbitrary text never panics, and a subject is valid exactly when the rules say so.
        #[test]
        fn validity_by_definition(s in "\\PC{0,12}") {
            let expected = !s.is_empty()
                && s.len() <= MAX_SUBJECT_BYTES
                && s.bytes().all(|b| (b'!'..=b'~').contains(&b))
                && s.split('.').all(|t| !t.is_empty() && !t.contains(['*', '>']));
            prop_assert_eq!(check_subject(&s).is_ok(), expected, "{:?}", s);
        }

        /// A literal pattern matches exactly the subject equal to it.
        #[test]
        fn literal_pattern_matches_only_itself(a in literal_subject(), b in literal_subject()) {
            let p = Pattern::parse(&a).unwrap();
            prop_assert!(p.is_literal());
            prop_assert_eq!(p.matches(&b), a == b);
        }

        /// No grant ever allows a reserved or invalid subject, whatever the patterns.
        #[test]
        fn grants_never_reach_reserved(patterns in prop::collection::vec(dotted(5), 0..4), subject in dotted(5)) {
            let parsed: Vec<Pattern> = patterns.iter().filter_map(|p| Pattern::parse(p).ok()).collect();
            let grants = SubjectGrants::new(parsed.clone());
            if grants.allows(&subject) {
                prop_assert!(check_subject(&subject).is_ok());
                prop_assert!(!is_reserved(&subject));
                prop_assert!(parsed.iter().any(|p| reference(&toks(p.as_str()), &toks(&subject))));
            }
            for p in &parsed {
                prop_assert!(!is_reserved(p.as_str()));
                let first = p.as_str().split('.').next().unwrap();
                prop_assert!(first != "*" && first != ">");
            }
        }

        /// A list parses exactly when every item does, in order.
        #[test]
        fn lists_parse_item_by_item(items in prop::collection::vec(dotted(4), 0..5)) {
            let text = items.join(", ");
            let each: Vec<_> = split_list(&text).map(Pattern::parse).collect();
            match parse_patterns(&text) {
                Ok(ps) => {
                    prop_assert!(each.iter().all(Result::is_ok));
                    prop_assert_eq!(ps.len(), each.len());
                }
                Err(errs) => {
                    prop_assert_eq!(errs.len(), each.iter().filter(|r| r.is_err()).count());
                }
            }
        }
    }
}
