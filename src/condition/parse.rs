//! The condition parser: words and parentheses in, an expression tree out,
//! or an error that says where and what was expected.
//!
//! Words are split at white space (line breaks included) and parentheses;
//! double quotes keep them together (`COMM="my server"`, with `\"` and `\\`
//! escapes). The grammar:
//!
//! ```text
//! condition := ["ready" "on"] expr
//! expr      := term (("and" | "or") term)*     one operator per level
//! term      := "(" expr ")" | clause
//! clause    := "socket" VALUE* (KEY "=" VALUE | KEY "!=" VALUE)*
//! ```

use std::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use super::glob;
use super::{Clause, Expr, Key, Pattern, Term};
use crate::endpoint::{Family, Transport};

/// A malformed condition: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConditionError {
    /// Byte offset of the offending token in the text.
    offset: usize,
    /// 1-based line of the offending token.
    line: usize,
    /// 1-based column (in characters) of the offending token.
    column: usize,
    /// Whether the text has several lines (then the line is named too).
    multiline: bool,
    /// What went wrong, as a lowercase fragment.
    message: String,
}

impl ConditionError {
    fn at(text: &str, offset: usize, message: String) -> ConditionError {
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ConditionError {
            offset,
            line,
            column: text[line_start..offset].chars().count() + 1,
            multiline: text.trim_end().contains('\n'),
            message,
        }
    }

    /// The 1-based column of the offending token.
    pub fn column(&self) -> usize {
        self.column
    }

    /// The message, then the offending line with a caret under the column.
    pub fn render(&self, text: &str) -> String {
        let line = text.lines().nth(self.line - 1).unwrap_or("");
        let caret = " ".repeat(self.column - 1);
        format!("{self}\n  {line}\n  {caret}^")
    }
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.multiline {
            write!(f, "line {}, ", self.line)?;
        }
        write!(f, "column {}: {}", self.column, self.message)
    }
}

/// A token: a parenthesis or a word, with its byte offset.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    /// `text` is the word with quotes removed; `quoted` whether any part was
    /// quoted (a quoted `and` is a value, not an operator).
    Word {
        text: String,
        quoted: bool,
    },
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ConditionError> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        if c == '(' || c == ')' {
            chars.next();
            tokens.push((start, if c == '(' { Token::Open } else { Token::Close }));
            continue;
        }
        let (mut word, mut quoted) = (String::new(), false);
        while let Some(&(at, c)) = chars.peek() {
            if c.is_whitespace() || c == '(' || c == ')' {
                break;
            }
            chars.next();
            if c != '"' {
                word.push(c);
                continue;
            }
            quoted = true;
            loop {
                match chars.next() {
                    None => {
                        return Err(ConditionError::at(text, at, "unterminated quote".into()));
                    }
                    Some((_, '"')) => break,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('"' | '\\'))) => word.push(c),
                        Some((_, c)) => {
                            // Keep other escapes for the glob matcher.
                            word.push('\\');
                            word.push(c);
                        }
                        None => {
                            return Err(ConditionError::at(text, at, "unterminated quote".into()));
                        }
                    },
                    Some((_, c)) => word.push(c),
                }
            }
        }
        tokens.push((start, Token::Word { text: word, quoted }));
    }
    Ok(tokens)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<(usize, Token)>,
    at: usize,
}

/// Parses a whole condition.
pub(crate) fn parse(text: &str) -> Result<Expr, ConditionError> {
    let mut parser = Parser {
        text,
        tokens: tokenize(text)?,
        at: 0,
    };
    if parser.is_word("ready") {
        parser.at += 1;
        if !parser.is_word("on") {
            return Err(parser.expected("'on' after 'ready'"));
        }
        parser.at += 1;
    }
    let expr = parser.expr()?;
    match parser.peek() {
        None => Ok(expr),
        Some((offset, Token::Close)) => {
            Err(parser.error_at(*offset, "unexpected ')' without a matching '('".into()))
        }
        Some(_) => Err(parser.expected("'and', 'or' or the end")),
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<&(usize, Token)> {
        self.tokens.get(self.at)
    }

    /// Whether the next token is this unquoted word.
    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some((_, Token::Word { text, quoted: false })) if text == word)
    }

    /// The operator at the cursor, if any.
    fn operator(&self) -> Option<&'static str> {
        ["and", "or"].into_iter().find(|op| self.is_word(op))
    }

    fn error_at(&self, offset: usize, message: String) -> ConditionError {
        ConditionError::at(self.text, offset, message)
    }

    /// "expected X, found Y" at the cursor.
    fn expected(&self, what: &str) -> ConditionError {
        match self.peek() {
            None => self.error_at(
                self.text.trim_end().len(),
                format!("expected {what}, found the end of the condition"),
            ),
            Some((offset, token)) => {
                let found = match token {
                    Token::Open => "'('".to_owned(),
                    Token::Close => "')'".to_owned(),
                    Token::Word { text, .. } => format!("'{text}'"),
                };
                self.error_at(*offset, format!("expected {what}, found {found}"))
            }
        }
    }

    fn expr(&mut self) -> Result<Expr, ConditionError> {
        let mut terms = vec![self.term()?];
        let mut level_op: Option<&str> = None;
        while let Some(op) = self.operator() {
            let offset = self.tokens[self.at].0;
            if level_op.is_some_and(|first| first != op) {
                return Err(self.error_at(
                    offset,
                    "cannot mix 'and' and 'or' without parentheses; group with ( )".into(),
                ));
            }
            level_op = Some(op);
            self.at += 1;
            if self.peek().is_none() {
                return Err(self.error_at(
                    offset,
                    format!(
                        "expected 'socket' or '(' after '{op}', found the end of the condition"
                    ),
                ));
            }
            if self.operator().is_some() {
                return Err(self.expected(&format!("'socket' or '(' after '{op}'")));
            }
            terms.push(self.term()?);
        }
        Ok(match level_op {
            None => terms.pop().expect("one term"),
            Some("and") => Expr::And(terms),
            Some(_) => Expr::Or(terms),
        })
    }

    fn term(&mut self) -> Result<Expr, ConditionError> {
        match self.peek() {
            Some((offset, Token::Open)) => {
                let open = *offset;
                self.at += 1;
                if matches!(self.peek(), Some((_, Token::Close))) {
                    return Err(self.expected("'socket' or '(' inside parentheses"));
                }
                let expr = self.expr()?;
                match self.peek() {
                    Some((_, Token::Close)) => {
                        self.at += 1;
                        Ok(expr)
                    }
                    None => Err(self.error_at(open, "'(' is never closed".into())),
                    Some(_) => Err(self.expected("'and', 'or' or ')'")),
                }
            }
            Some((offset, Token::Word { text, quoted })) => {
                if text == "socket" && !quoted {
                    self.at += 1;
                    return self.clause().map(Expr::Clause);
                }
                if !quoted && (text == "and" || text == "or") {
                    return Err(self.expected("'socket' or '('"));
                }
                Err(self.error_at(
                    *offset,
                    format!("unknown event '{text}' (only 'socket' exists)"),
                ))
            }
            _ => Err(self.expected("'socket' or '('")),
        }
    }

    /// The words after `socket`, up to an operator, `)` or the end.
    fn clause(&mut self) -> Result<Clause, ConditionError> {
        let mut terms = Vec::new();
        let mut positional = 0;
        let mut named_seen = false;
        while let Some((offset, Token::Word { text, quoted })) = self.peek() {
            let (offset, text, quoted) = (*offset, text.clone(), *quoted);
            if !quoted && (text == "and" || text == "or") {
                break;
            }
            self.at += 1;
            match split_named(&text, quoted) {
                Some((name, negated, value)) => {
                    named_seen = true;
                    let key = Key::ALL
                        .into_iter()
                        .find(|k| k.name() == name)
                        .ok_or_else(|| self.error_at(offset, unknown_key(name)))?;
                    let value_offset = offset + name.len() + if negated { 2 } else { 1 };
                    terms.push(self.term_of(key, negated, value, value_offset)?);
                }
                None => {
                    if named_seen {
                        return Err(self.error_at(
                            offset,
                            format!(
                                "positional value '{text}' after a named key; write KEY={text}"
                            ),
                        ));
                    }
                    let Some(&key) = Key::POSITIONAL.get(positional) else {
                        return Err(self.error_at(
                            offset,
                            format!(
                                "too many positional values at '{text}' (they stand for PROTO, PORT, ADDR, TRANSPORT)"
                            ),
                        ));
                    };
                    positional += 1;
                    terms.push(self.term_of(key, false, &text, offset)?);
                }
            }
        }
        Ok(Clause { terms })
    }

    /// Checks a value against its key and turns it into a term.
    fn term_of(
        &self,
        key: Key,
        negated: bool,
        value: &str,
        offset: usize,
    ) -> Result<Term, ConditionError> {
        let error = |message: String| Err(self.error_at(offset, message));
        if value.is_empty() {
            return error(format!("expected a value for {}", key.name()));
        }
        let glob = glob::is_glob(value);
        let pattern = match key {
            Key::Proto if !glob && !Family::ALL.iter().any(|f| f.as_str() == value) => {
                let hint = if Transport::ALL.iter().any(|t| t.as_str() == value) {
                    format!("; the first positional value is PROTO, write TRANSPORT={value}")
                } else {
                    String::new()
                };
                return error(format!(
                    "invalid PROTO '{value}' (expected inet or inet6{hint})"
                ));
            }
            Key::Transport if !glob && !Transport::ALL.iter().any(|t| t.as_str() == value) => {
                return error(format!("invalid TRANSPORT '{value}' (expected tcp or udp)"));
            }
            Key::Port if !glob => match port_pattern(value) {
                Ok(pattern) => pattern,
                Err(message) => return error(message),
            },
            Key::Addr if !glob || value.starts_with('[') => match addr_pattern(value) {
                Ok(pattern) => pattern,
                Err(message) => return error(message),
            },
            Key::V6only if value != "0" && value != "1" => {
                return error(format!("invalid V6ONLY '{value}' (expected 0 or 1)"));
            }
            Key::Pid if !glob && value.parse::<u32>().is_err() => {
                return error(format!("invalid PID '{value}' (expected a process id)"));
            }
            _ => Pattern::Glob(value.to_owned()),
        };
        Ok(Term {
            key,
            negated,
            pattern,
        })
    }
}

/// Splits `KEY=VALUE` or `KEY!=VALUE`. A word is named when it starts with
/// something shaped like a key; quoting the whole word makes it a value.
fn split_named(word: &str, quoted: bool) -> Option<(&str, bool, &str)> {
    let eq = word.find('=')?;
    let (name, negated) = match word[..eq].strip_suffix('!') {
        Some(name) => (name, true),
        None => (&word[..eq], false),
    };
    let key_shaped = !name.is_empty()
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if !key_shaped || (quoted && word.starts_with('"')) {
        return None;
    }
    Some((name, negated, &word[eq + 1..]))
}

fn unknown_key(name: &str) -> String {
    let known: Vec<&str> = Key::ALL.iter().map(|k| k.name()).collect();
    format!("unknown key '{name}' (known keys: {})", known.join(", "))
}

fn port_number(text: &str) -> Result<u16, String> {
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "invalid PORT '{text}' (expected a number 0-65535, a range A-B or a glob)"
        ));
    }
    text.parse::<u16>()
        .map_err(|_| format!("PORT {text} is out of range 0-65535"))
}

fn port_pattern(value: &str) -> Result<Pattern, String> {
    match value.split_once('-') {
        Some((low, high)) if !low.is_empty() => {
            let (low, high) = (port_number(low)?, port_number(high)?);
            if low > high {
                return Err(format!(
                    "empty PORT range {low}-{high} (write the lower port first)"
                ));
            }
            Ok(Pattern::Range(low, high))
        }
        _ => {
            port_number(value)?;
            Ok(Pattern::Glob(value.to_owned()))
        }
    }
}

/// Dotted digits, or hex digits with colons: what only an address is.
fn looks_like_an_address(text: &str) -> bool {
    let dotted = text.contains('.') && text.chars().all(|c| c.is_ascii_digit() || c == '.');
    let colons = text.contains(':')
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.');
    dotted || colons
}

fn addr_pattern(value: &str) -> Result<Pattern, String> {
    let bare = value
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .unwrap_or(value);
    if bare.contains('/') {
        return bare.parse::<IpNet>().map(Pattern::Net).map_err(|_| {
            format!("invalid ADDR block '{value}' (expected CIDR such as 10.0.0.0/8)")
        });
    }
    match bare.parse::<IpAddr>() {
        Ok(ip) => Ok(Pattern::Ip(ip)),
        // Shaped like an address but not one (`300.1.1.1`, `fe80:::1`): a
        // typo that would otherwise match nothing, and a wait that never ends.
        Err(_) if looks_like_an_address(bare) => Err(format!(
            "invalid ADDR '{value}' (expected an IPv4 or IPv6 address, a CIDR block or a glob)"
        )),
        // Other text: matched as a plain word.
        Err(_) => Ok(Pattern::Glob(value.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::Condition;

    /// The error for `text`, as `(column, message)`.
    fn error(text: &str) -> (usize, String) {
        let e = Condition::parse(text).expect_err(text);
        (e.column(), e.to_string())
    }

    fn clause_terms(text: &str) -> Vec<Term> {
        match parse(text).unwrap() {
            Expr::Clause(c) => c.terms,
            other => panic!("not one clause: {other:?}"),
        }
    }

    #[test]
    fn positional_values_map_to_proto_port_addr_transport() {
        let terms = clause_terms("socket inet 80 127.0.0.1 tcp");
        let keys: Vec<Key> = terms.iter().map(|t| t.key).collect();
        assert_eq!(keys, Key::POSITIONAL);
        assert_eq!(terms[2].pattern, Pattern::Ip("127.0.0.1".parse().unwrap()));
        let terms = clause_terms("socket inet PORT!=22 ADDR=[::1]");
        assert_eq!(terms[1].key, Key::Port);
        assert!(terms[1].negated);
        assert_eq!(terms[2].pattern, Pattern::Ip("::1".parse().unwrap()));
    }

    #[test]
    fn structure() {
        assert!(matches!(parse("ready on socket").unwrap(), Expr::Clause(_)));
        assert!(
            matches!(parse("socket and socket and socket").unwrap(), Expr::And(v) if v.len() == 3)
        );
        let nested = parse("(socket PORT=1\n or socket PORT=2)\nand socket PORT=3").unwrap();
        match nested {
            Expr::And(v) => assert!(matches!(&v[0], Expr::Or(inner) if inner.len() == 2)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            clause_terms(r#"socket COMM="a \"b\" and c""#)[0].pattern,
            Pattern::Glob(r#"a "b" and c"#.into())
        );
        assert_eq!(
            clause_terms("socket PORT=8000-8099")[0].pattern,
            Pattern::Range(8000, 8099)
        );
        assert_eq!(
            clause_terms("socket ADDR=10.0.0.0/8")[0].pattern,
            Pattern::Net("10.0.0.0/8".parse().unwrap())
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases: [(&str, usize, &str); 23] = [
            ("", 1, "expected 'socket' or '(', found the end"),
            (
                "sockt PORT=80",
                1,
                "unknown event 'sockt' (only 'socket' exists)",
            ),
            (
                "socket PORT=1 and socket PORT=2 or socket PORT=3",
                33,
                "cannot mix 'and' and 'or'",
            ),
            (
                "socket PROT=inet",
                8,
                "unknown key 'PROT' (known keys: PROTO, PORT, ADDR, TRANSPORT, V6ONLY, PID, COMM)",
            ),
            (
                "socket PORT=70000",
                13,
                "PORT 70000 is out of range 0-65535",
            ),
            ("socket PORT=-5", 13, "invalid PORT '-5'"),
            ("socket PORT=90-80", 13, "empty PORT range 90-80"),
            (
                "socket PROTO=inet7",
                14,
                "invalid PROTO 'inet7' (expected inet or inet6)",
            ),
            ("socket tcp PORT=80", 8, "write TRANSPORT=tcp"),
            ("socket inet7", 8, "invalid PROTO 'inet7'"),
            (
                "socket TRANSPORT=sctp",
                18,
                "invalid TRANSPORT 'sctp' (expected tcp or udp)",
            ),
            ("(socket PORT=80", 1, "'(' is never closed"),
            (
                "socket PORT=80)",
                15,
                "unexpected ')' without a matching '('",
            ),
            (
                "socket PORT=80 and",
                16,
                "expected 'socket' or '(' after 'and', found the end",
            ),
            ("and socket", 1, "expected 'socket' or '(', found 'and'"),
            (
                "socket or or socket",
                11,
                "expected 'socket' or '(' after 'or', found 'or'",
            ),
            (
                "()",
                2,
                "expected 'socket' or '(' inside parentheses, found ')'",
            ),
            (
                "socket PORT=80 inet",
                16,
                "positional value 'inet' after a named key",
            ),
            ("socket inet 80 ::1 tcp x", 24, "too many positional values"),
            ("socket ADDR=10.0.0.1/40", 13, "invalid ADDR block"),
            ("socket ADDR=300.1.1.1", 13, "invalid ADDR '300.1.1.1'"),
            ("socket ADDR=fe80:::1", 13, "invalid ADDR 'fe80:::1'"),
            ("ready socket", 7, "expected 'on' after 'ready'"),
        ];
        for (text, column, message) in cases {
            let (got_column, got) = error(text);
            assert!(got.contains(message), "{text:?}: {got:?} lacks {message:?}");
            assert_eq!(got_column, column, "{text:?}: {got}");
        }
    }

    #[test]
    fn more_errors() {
        assert!(error(r#"socket COMM="x"#).1.contains("unterminated quote"));
        assert!(error("socket V6ONLY=2").1.contains("expected 0 or 1"));
        assert!(error("socket PID=abc").1.contains("invalid PID"));
        assert!(
            error("socket PORT=")
                .1
                .contains("expected a value for PORT")
        );
    }

    #[test]
    fn multi_line_errors_name_the_line_and_render_a_caret() {
        let text = "(socket PORT=80\n or socket PROT=x)";
        let e = Condition::parse(text).unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2, column 12: unknown key 'PROT' (known keys: PROTO, PORT, ADDR, TRANSPORT, V6ONLY, PID, COMM)"
        );
        assert_eq!(e.render(text).lines().last().unwrap(), "             ^");
        let one_line = Condition::parse("socket PORT=x").unwrap_err();
        assert!(
            one_line
                .render("socket PORT=x")
                .ends_with("\n  socket PORT=x\n              ^")
        );
    }
}
