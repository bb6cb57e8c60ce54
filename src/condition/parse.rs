//! The condition parser: words and parentheses in, an expression tree out,
//! or an error that says where and what was expected.
//!
//! Words are split at white space (line breaks included) and parentheses.
//! Double quotes keep a value together and read the form events print
//! (`crate::quote`): `\n`, `\t`, `\r`, `\"`, `\\` and `\xNN` (bytes, which
//! need not be UTF-8); any other `\c` is the character c, taken literally by
//! globs, as an unquoted `\c` is. A character that came from an escape is
//! never a glob metacharacter. `COMM=""` is the empty name; an unquoted
//! `COMM=` is an error. The grammar:
//!
//! ```text
//! condition := ["ready" "on"] expr
//! expr      := term (("and" | "or") term)*     one operator per level
//! term      := "(" expr ")" | clause           at most 64 levels deep
//! clause    := "socket" VALUE* (KEY "=" VALUE | KEY "!=" VALUE)*
//! ```
//!
//! Each value is checked against its key here, so that a term that can never
//! hold (`ADDR=localhost`, `PORT=0`, `PORT=80 PORT=81` in one clause) is an
//! error the user sees at once instead of a wait that never ends.
//!
//! Messages echo the user's words with control characters escaped and long
//! words clipped: a condition can neither forge a line of a log nor flood it.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

use super::glob::Glob;
use super::reach::{canonical_addr, canonical_net};
use super::{Addrs, Clause, Expr, Numbers, Term, Test};
use crate::endpoint::{Family, Transport};
use crate::field::Field;
use crate::quote::{bytes_from_text, escape_controls, escaped_width, text_from_bytes};

/// How deep parentheses may nest: far more than anyone writes, far less
/// than would exhaust the stack.
const MAX_DEPTH: usize = 64;

/// The highest process id Linux hands out (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX: u32 = 4_194_304;

/// The bytes of a command name the kernel keeps (`TASK_COMM_LEN` - 1).
const COMM_MAX: usize = 15;

/// How many characters of the offending line an error shows.
const WINDOW: usize = 70;

/// How many characters of a word a message echoes.
const WORD_MAX: usize = 40;

/// A malformed condition: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConditionError {
    /// 1-based line of the offending token.
    line: usize,
    /// 1-based column (in characters, quotes included) of the offending
    /// token.
    column: usize,
    /// Whether the text has several lines (then the line is named too).
    multiline: bool,
    /// What went wrong, as a lowercase fragment; user words in it are
    /// escaped and clipped.
    message: String,
}

impl ConditionError {
    fn at(text: &str, offset: usize, message: String) -> ConditionError {
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        ConditionError {
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
    /// A long line is shown as a window around the caret, with `...` where
    /// it is cut; control characters are escaped (tabs shown as spaces, so
    /// the caret stays under its column).
    pub fn render(&self, text: &str) -> String {
        let line: Vec<char> = text
            .split('\n')
            .nth(self.line - 1)
            .unwrap_or("")
            .chars()
            .collect();
        let caret = (self.column - 1).min(line.len());
        let (from, to) = if line.len() <= WINDOW {
            (0, line.len())
        } else {
            let from = caret.saturating_sub(WINDOW / 2).min(line.len() - WINDOW);
            (from, from + WINDOW)
        };
        let mut shown = String::new();
        let mut width = 0;
        let mut caret_width = None;
        if from > 0 {
            shown.push_str("...");
            width += 3;
        }
        for (i, &c) in line[from..to].iter().enumerate() {
            if from + i == caret {
                caret_width = Some(width);
            }
            if c == '\t' {
                shown.push(' ');
                width += 1;
            } else {
                shown.push_str(&escape_controls(c.encode_utf8(&mut [0; 4])));
                width += escaped_width(c);
            }
        }
        let caret_width = caret_width.unwrap_or(width);
        if to < line.len() {
            shown.push_str("...");
        }
        format!("{self}\n  {shown}\n  {}^", " ".repeat(caret_width))
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

/// A user's word as a message echoes it: clipped, control characters
/// escaped.
fn shown(word: &str) -> String {
    if word.chars().count() <= WORD_MAX {
        return escape_controls(word).into_owned();
    }
    let clipped: String = word.chars().take(WORD_MAX - 3).collect();
    format!("{}...", escape_controls(&clipped))
}

/// One character of a word, after quotes and escapes are resolved.
#[derive(Debug, Clone, Copy)]
struct Ch {
    c: char,
    /// Byte offset in the text of what produced it.
    at: usize,
    /// Inside double quotes.
    quoted: bool,
    /// From an escape: literal, never a metacharacter or syntax.
    escaped: bool,
}

/// A word: a value, a `KEY=VALUE` term, an operator or the event name.
#[derive(Debug, Clone)]
struct Word {
    chars: Vec<Ch>,
    /// Where each quoted part opens: the index in `chars` it starts at, and
    /// the byte offset of its `"`.
    quotes: Vec<(usize, usize)>,
    /// Byte offsets of the word in the text.
    start: usize,
    end: usize,
}

impl Word {
    /// The word's text when nothing in it is quoted or escaped: only such a
    /// word can be `socket`, `and` or `or`.
    fn bare(&self) -> Option<String> {
        (self.quotes.is_empty() && self.chars.iter().all(|c| !c.escaped))
            .then(|| self.chars.iter().map(|c| c.c).collect())
    }

    /// The word's text, quotes and escapes resolved.
    fn text(&self) -> String {
        self.chars.iter().map(|c| c.c).collect()
    }

    /// The word as the user typed it.
    fn raw<'t>(&self, text: &'t str) -> &'t str {
        &text[self.start..self.end]
    }
}

/// A token: a parenthesis or a word, with its byte offset.
#[derive(Debug, Clone)]
enum Token {
    Open,
    Close,
    Word(Word),
}

type Chars<'t> = std::iter::Peekable<std::str::CharIndices<'t>>;

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ConditionError> {
    let mut tokens = Vec::new();
    let mut it = text.char_indices().peekable();
    while let Some(&(start, c)) = it.peek() {
        if c.is_whitespace() {
            it.next();
            continue;
        }
        if c == '(' || c == ')' {
            it.next();
            tokens.push((start, if c == '(' { Token::Open } else { Token::Close }));
            continue;
        }
        let mut word = Word {
            chars: Vec::new(),
            quotes: Vec::new(),
            start,
            end: start,
        };
        while let Some(&(at, c)) = it.peek() {
            if c.is_whitespace() || c == '(' || c == ')' {
                break;
            }
            it.next();
            let (c, escaped) = match c {
                '"' => {
                    word.quotes.push((word.chars.len(), at));
                    quoted_part(text, &mut it, at, &mut word.chars)?;
                    continue;
                }
                '\\' => match it.peek() {
                    Some(&(_, next)) if !next.is_whitespace() => {
                        it.next();
                        (next, true)
                    }
                    _ => {
                        return Err(ConditionError::at(
                            text,
                            at,
                            "dangling backslash: it escapes nothing (a backslash makes the \
                             next character literal)"
                                .into(),
                        ));
                    }
                },
                c => (c, false),
            };
            word.chars.push(Ch {
                c,
                at,
                quoted: false,
                escaped,
            });
        }
        word.end = it.peek().map_or(text.len(), |&(i, _)| i);
        tokens.push((start, Token::Word(word)));
    }
    Ok(tokens)
}

/// Reads a quoted part after its opening `"` at `open`, up to and including
/// the closing one.
fn quoted_part(
    text: &str,
    it: &mut Chars<'_>,
    open: usize,
    chars: &mut Vec<Ch>,
) -> Result<(), ConditionError> {
    let unterminated = || ConditionError::at(text, open, "unterminated quote".into());
    loop {
        let (at, c) = it.next().ok_or_else(unterminated)?;
        let c = match c {
            '"' => return Ok(()),
            '\\' => match it.next().ok_or_else(unterminated)?.1 {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                'x' => {
                    // A run of `\xNN` is bytes, decoded together: UTF-8
                    // sequences span several escapes.
                    let mut bytes = vec![hex_byte(text, it, at, open)?];
                    loop {
                        let mut ahead = it.clone();
                        match (ahead.next(), ahead.next()) {
                            (Some((next, '\\')), Some((_, 'x'))) => {
                                *it = ahead;
                                bytes.push(hex_byte(text, it, next, open)?);
                            }
                            _ => break,
                        }
                    }
                    chars.extend(text_from_bytes(&bytes).chars().map(|c| Ch {
                        c,
                        at,
                        quoted: true,
                        escaped: true,
                    }));
                    continue;
                }
                other => other,
            },
            c => {
                chars.push(Ch {
                    c,
                    at,
                    quoted: true,
                    escaped: false,
                });
                continue;
            }
        };
        chars.push(Ch {
            c,
            at,
            quoted: true,
            escaped: true,
        });
    }
}

/// The two hex digits after `\x` (the backslash at `at`).
fn hex_byte(text: &str, it: &mut Chars<'_>, at: usize, open: usize) -> Result<u8, ConditionError> {
    let digits: String = (0..2)
        .filter_map(|_| it.next_if(|(_, c)| *c != '"'))
        .map(|(_, c)| c)
        .collect();
    if it.peek().is_none() && digits.len() < 2 {
        return Err(ConditionError::at(text, open, "unterminated quote".into()));
    }
    match u8::from_str_radix(&digits, 16) {
        Ok(byte) if digits.len() == 2 && digits.chars().all(|c| c.is_ascii_hexdigit()) => Ok(byte),
        _ => Err(ConditionError::at(
            text,
            at,
            format!(
                "invalid escape '\\x{}': write \\xNN with two hex digits",
                escape_controls(&digits)
            ),
        )),
    }
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<(usize, Token)>,
    at: usize,
    /// How many parentheses are open.
    depth: usize,
}

/// Parses a whole condition.
pub(crate) fn parse(text: &str) -> Result<Expr, ConditionError> {
    let mut parser = Parser {
        text,
        tokens: tokenize(text)?,
        at: 0,
        depth: 0,
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

    /// Whether the next token is this bare word.
    fn is_word(&self, word: &str) -> bool {
        matches!(self.peek(), Some((_, Token::Word(w))) if w.bare().as_deref() == Some(word))
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
                    Token::Word(word) => format!("'{}'", shown(word.raw(self.text))),
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
                if self.depth == MAX_DEPTH {
                    return Err(self.error_at(
                        open,
                        format!("parentheses nest deeper than {MAX_DEPTH} levels"),
                    ));
                }
                self.at += 1;
                if matches!(self.peek(), Some((_, Token::Close))) {
                    return Err(self.expected("'socket' or '(' inside parentheses"));
                }
                self.depth += 1;
                let expr = self.expr()?;
                self.depth -= 1;
                match self.peek() {
                    Some((_, Token::Close)) => {
                        self.at += 1;
                        Ok(expr)
                    }
                    None => Err(self.error_at(open, "'(' is never closed".into())),
                    Some(_) => Err(self.expected("'and', 'or' or ')'")),
                }
            }
            Some((offset, Token::Word(word))) => match word.bare().as_deref() {
                Some("socket") => {
                    self.at += 1;
                    self.clause().map(Expr::Clause)
                }
                Some("and" | "or") => Err(self.expected("'socket' or '('")),
                _ => Err(self.error_at(*offset, self.not_an_event(word))),
            },
            _ => Err(self.expected("'socket' or '('")),
        }
    }

    /// Why a word where the event name belongs is not one, and what to
    /// write instead.
    fn not_an_event(&self, word: &Word) -> String {
        let raw = shown(word.raw(self.text));
        let text = word.text();
        if text == "socket" {
            return format!("the event name is written bare: socket, not {raw}");
        }
        if text.eq_ignore_ascii_case("socket") {
            return format!("unknown event '{raw}': event names are lower case, write socket");
        }
        if split_named(word).is_some() {
            return format!("a condition starts with the event name: write 'socket {raw}'");
        }
        if text.parse::<u16>().is_ok() {
            return format!("a condition starts with the event name: write 'socket PORT={raw}'");
        }
        format!("unknown event '{raw}' (only 'socket' exists)")
    }

    /// The words after `socket`, up to an operator, `)` or the end.
    fn clause(&mut self) -> Result<Clause, ConditionError> {
        let mut terms = Vec::new();
        let mut positional = 0;
        let mut named_seen = false;
        let mut seen = Seen::default();
        while let Some((offset, Token::Word(word))) = self.peek() {
            let offset = *offset;
            if let Some(bare) = word.bare() {
                if bare == "and" || bare == "or" {
                    break;
                }
                if bare.eq_ignore_ascii_case("and") || bare.eq_ignore_ascii_case("or") {
                    let lower = bare.to_ascii_lowercase();
                    return Err(self.error_at(
                        offset,
                        format!("operators are lower case: write '{lower}', not '{bare}'"),
                    ));
                }
            }
            let index = self.at;
            self.at += 1;
            let Token::Word(word) = &self.tokens[index].1 else {
                unreachable!("peeked a word")
            };
            let named = split_named(word);
            let (field, negated, value) = match &named {
                Some(named) => {
                    named_seen = true;
                    let raw = &self.text[named.value_at..word.end];
                    let Some(field) = Field::from_name(&named.name) else {
                        return Err(self.error_at(offset, unknown_key(&named.name, raw)));
                    };
                    let value = Value {
                        chars: named.value,
                        quoted: named.value_quoted,
                        at: named.value_at,
                        raw,
                    };
                    (field, named.negated, value)
                }
                None => {
                    let raw = shown(word.raw(self.text));
                    if named_seen {
                        return Err(self.error_at(
                            offset,
                            format!("positional value '{raw}' after a named key; write KEY={raw}"),
                        ));
                    }
                    let Some(&field) = Field::POSITIONAL.get(positional) else {
                        return Err(self.error_at(
                            offset,
                            format!(
                                "too many positional values at '{raw}' (they stand for PROTO, \
                                 PORT, ADDR, TRANSPORT)"
                            ),
                        ));
                    };
                    positional += 1;
                    let value = Value {
                        chars: &word.chars,
                        quoted: !word.quotes.is_empty(),
                        at: word.start,
                        raw: word.raw(self.text),
                    };
                    (field, false, value)
                }
            };
            let test = value.test(field).map_err(|message| {
                let hint = match named {
                    Some(_) => String::new(),
                    None => positional_hint(field, &value.text()),
                };
                self.error_at(value.at, format!("{message}{hint}"))
            })?;
            let term = Term { test, negated };
            seen.add(&term, &value)
                .map_err(|message| self.error_at(offset, message))?;
            terms.push(term);
        }
        Ok(Clause { terms })
    }
}

/// A `KEY=VALUE` or `KEY!=VALUE` word, split.
struct Named<'w> {
    name: String,
    negated: bool,
    value: &'w [Ch],
    /// Whether any of the value was quoted (`COMM=""` is a value).
    value_quoted: bool,
    /// Byte offset where the value starts (its opening quote, if quoted).
    value_at: usize,
}

/// Splits `KEY=VALUE` or `KEY!=VALUE` at the first `=` that is neither
/// quoted nor escaped, when what comes before is shaped like a key. A word
/// whose `=` is quoted (`"PORT=80"`) is a value.
fn split_named(word: &Word) -> Option<Named<'_>> {
    let syntax = |ch: &Ch, c: char| ch.c == c && !ch.quoted && !ch.escaped;
    let eq = word.chars.iter().position(|ch| syntax(ch, '='))?;
    let negated = eq > 0 && syntax(&word.chars[eq - 1], '!');
    let name = &word.chars[..eq - usize::from(negated)];
    let key_shaped = name.first().is_some_and(|first| !first.c.is_ascii_digit())
        && name
            .iter()
            .all(|ch| !ch.quoted && !ch.escaped && (ch.c.is_ascii_alphanumeric() || ch.c == '_'));
    if !key_shaped {
        return None;
    }
    let value = &word.chars[eq + 1..];
    let first_quote = word.quotes.iter().find(|&&(index, _)| index > eq);
    let value_at = match (value.first(), first_quote) {
        (Some(first), Some(&(_, quote))) => first.at.min(quote),
        (Some(first), None) => first.at,
        (None, Some(&(_, quote))) => quote,
        (None, None) => word.chars[eq].at + 1,
    };
    Some(Named {
        name: name.iter().map(|ch| ch.c).collect(),
        negated,
        value,
        value_quoted: first_quote.is_some(),
        value_at,
    })
}

fn unknown_key(name: &str, raw_value: &str) -> String {
    let name = shown(name);
    match Field::from_name(&name.to_ascii_uppercase()) {
        Some(field) => format!(
            "unknown key '{name}': keys are upper case, write {field}={}",
            shown(raw_value)
        ),
        None => {
            let known: Vec<&str> = Field::ALL.iter().map(|k| k.name()).collect();
            format!("unknown key '{name}' (known keys: {})", known.join(", "))
        }
    }
}

/// For a positional value its key refused: the key it would suit.
fn positional_hint(field: Field, value: &str) -> String {
    let fits = |other: Field| match other {
        Field::Proto => Family::ALL.iter().any(|f| f.as_str() == value),
        Field::Transport => Transport::ALL.iter().any(|t| t.as_str() == value),
        Field::Port => number(Field::Port, value, value).is_ok(),
        Field::Addr => value.parse::<IpAddr>().is_ok() || value.parse::<IpNet>().is_ok(),
        _ => false,
    };
    match Field::POSITIONAL
        .into_iter()
        .find(|&f| f != field && fits(f))
    {
        Some(other) => format!(
            "; positional values stand for PROTO, PORT, ADDR, TRANSPORT in that order, so \
             the {} one is {field}: write {other}={}",
            ordinal(field),
            shown(value)
        ),
        None => String::new(),
    }
}

fn ordinal(field: Field) -> &'static str {
    match field {
        Field::Proto => "first",
        Field::Port => "second",
        Field::Addr => "third",
        _ => "fourth",
    }
}

/// A term's value, as typed.
struct Value<'w> {
    chars: &'w [Ch],
    /// Whether any of it was quoted.
    quoted: bool,
    /// Byte offset where it starts.
    at: usize,
    /// As the user typed it.
    raw: &'w str,
}

impl Value<'_> {
    fn text(&self) -> String {
        self.chars.iter().map(|c| c.c).collect()
    }

    /// The test this value makes for `field`, or why it can never hold.
    fn test(&self, field: Field) -> Result<Test, String> {
        let raw = shown(self.raw);
        if self.chars.is_empty() && !(self.quoted && field == Field::Comm) {
            return Err(format!("expected a value for {field}"));
        }
        let pairs: Vec<(char, bool)> = self.chars.iter().map(|c| (c.c, c.escaped)).collect();
        let glob = Glob::compile(&pairs);
        let literal = glob.literal();
        Ok(match field {
            Field::Proto => {
                let families = named_values(&Family::ALL, |f| f.as_str(), &glob);
                if families.is_empty() {
                    return Err(match literal {
                        Some(_) => format!("invalid PROTO '{raw}' (expected inet, inet6 or unix)"),
                        None => format!("PROTO glob '{raw}' matches none of inet, inet6, unix"),
                    });
                }
                Test::Proto(families)
            }
            Field::Transport => {
                let transports = named_values(&Transport::ALL, |t| t.as_str(), &glob);
                if transports.is_empty() {
                    return Err(match literal {
                        Some(_) => format!(
                            "invalid TRANSPORT '{raw}' (expected tcp, udp, stream, seqpacket or \
                             dgram)"
                        ),
                        None => format!(
                            "TRANSPORT glob '{raw}' matches none of tcp, udp, stream, seqpacket, \
                             dgram"
                        ),
                    });
                }
                Test::Transport(transports)
            }
            Field::Port => Test::Port(numbers(Field::Port, glob, literal, &raw)?),
            Field::Pid => Test::Pid(numbers(Field::Pid, glob, literal, &raw)?),
            Field::Addr => Test::Addr(addrs(&self.text(), glob, literal, &raw)?),
            Field::SocketPath => Test::SocketPath(glob),
            Field::Netns => Test::Netns(glob),
            Field::V6only => match literal.as_deref() {
                Some("0") => Test::V6only(false),
                Some("1") => Test::V6only(true),
                _ => return Err(format!("invalid V6ONLY '{raw}' (expected 0 or 1)")),
            },
            Field::Comm => {
                let too_long = match &literal {
                    Some(name) => bytes_from_text(name).len() > COMM_MAX,
                    None => glob.min_bytes() > COMM_MAX,
                };
                if too_long {
                    let hint = literal.map_or(String::new(), |name| {
                        let kept = &bytes_from_text(&name)[..COMM_MAX];
                        let kept = text_from_bytes(kept);
                        format!(": write COMM={}", crate::quote::quote(&kept))
                    });
                    return Err(format!(
                        "COMM '{raw}' is longer than the {COMM_MAX} bytes the kernel keeps of a \
                         command name, so no process has it{hint}"
                    ));
                }
                Test::Comm(glob)
            }
        })
    }
}

/// The values of a small closed set (families, transports) a glob names.
fn named_values<T: Copy>(all: &[T], name: impl Fn(T) -> &'static str, glob: &Glob) -> Vec<T> {
    all.iter()
        .copied()
        .filter(|&v| glob.matches(name(v)))
        .collect()
}

/// The highest value of a number field.
fn number_max(field: Field) -> u32 {
    match field {
        Field::Port => u32::from(u16::MAX),
        _ => PID_MAX,
    }
}

/// A decimal number (leading zeros allowed: `PORT=080` is 80) of `field`,
/// from 0 to its maximum.
fn number(field: Field, text: &str, raw: &str) -> Result<u32, String> {
    let shown_text = shown(raw);
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(match field {
            Field::Port => format!(
                "invalid PORT '{shown_text}' (expected a number 1-65535, a range A-B or a glob)"
            ),
            _ => format!("invalid PID '{shown_text}' (expected a process id)"),
        });
    }
    let max = number_max(field);
    let digits = text.trim_start_matches('0');
    match digits.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ if digits.is_empty() => Ok(0),
        _ => Err(match field {
            Field::Port => format!("PORT {shown_text} is out of range 1-65535"),
            _ => format!("PID {shown_text} is above {PID_MAX}, the highest process id Linux gives"),
        }),
    }
}

/// A `PORT` or `PID` value: a number, a port range, or a glob that some
/// number, written in decimal, matches.
fn numbers(
    field: Field,
    glob: Glob,
    literal: Option<String>,
    raw: &str,
) -> Result<Numbers, String> {
    let Some(text) = literal else {
        if let Some(c) = glob.literal_chars().find(|c| !c.is_ascii_digit()) {
            return Err(if field == Field::Port && c == '-' {
                format!("invalid PORT range '{raw}': a range takes two numbers, not globs")
            } else {
                format!(
                    "{field} glob '{raw}' can never match: '{}' is not a digit",
                    shown(c.encode_utf8(&mut [0; 4]))
                )
            });
        }
        if !glob.matches_some_number(number_max(field)) {
            let what = match field {
                Field::Port => "port 1-65535",
                _ => "process id",
            };
            return Err(format!(
                "{field} glob '{raw}' matches no {what} as written (in decimal, without leading \
                 zeros)"
            ));
        }
        return Ok(Numbers::Glob(glob));
    };
    let range = text
        .split_once('-')
        .filter(|(low, _)| field == Field::Port && !low.is_empty());
    if let Some((low, high)) = range {
        let (low, high) = (number(field, low, low)?, number(field, high, high)?);
        if low > high {
            return Err(format!(
                "empty PORT range {low}-{high} (write the lower port first)"
            ));
        }
        if high == 0 {
            return Err(format!(
                "PORT range '{raw}' holds only port 0, which never listens"
            ));
        }
        return Ok(Numbers::Range(low, high));
    }
    match number(field, &text, raw)? {
        0 if field == Field::Port => Err(
            "PORT 0 never listens: a socket bound to port 0 is given a free port by the kernel"
                .into(),
        ),
        0 => Err("PID 0 is not a process".into()),
        n => Ok(Numbers::Exact(n)),
    }
}

/// An `ADDR` value: an address or CIDR block (IPv4-mapped ones made IPv4),
/// or a glob of address characters. `text` is the value with escapes
/// resolved.
fn addrs(text: &str, glob: Glob, literal: Option<String>, raw: &str) -> Result<Addrs, String> {
    // Shapes that hold a glob's metacharacters (`[::]:3000`) come first.
    if let Ok(socket) = text.parse::<SocketAddr>() {
        return Err(format!(
            "invalid ADDR '{raw}': an address with a port; write ADDR={} PORT={}",
            socket.ip(),
            socket.port()
        ));
    }
    if let Some((inside, after)) = text.strip_prefix('[').and_then(|t| t.split_once(']')) {
        if let (true, Ok(ip)) = (after.is_empty(), inside.parse::<IpAddr>()) {
            return Ok(Addrs::Ip(canonical_addr(ip)));
        }
        if after.starts_with('/') {
            return Err(format!(
                "invalid ADDR '{raw}': brackets hold an address, not a block; write \
                 ADDR={}{}",
                shown(inside),
                shown(after)
            ));
        }
    }
    if let Some((address, zone)) = text.split_once('%') {
        let address = address.trim_start_matches('[');
        return Err(format!(
            "invalid ADDR '{raw}': zone ids ('%{}') are not supported; write ADDR={}",
            shown(zone.trim_end_matches(']')),
            shown(address)
        ));
    }
    let Some(text) = literal else {
        return address_glob(glob, raw).map(Addrs::Glob);
    };
    if text.contains('/') {
        return text
            .parse::<IpNet>()
            .map(|net| Addrs::Net(canonical_net(net)))
            .map_err(|_| {
                format!("invalid ADDR block '{raw}' (expected CIDR such as 10.0.0.0/8 or fd00::/8)")
            });
    }
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Ok(Addrs::Ip(canonical_addr(ip)));
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("0x")
        || (!text.is_empty() && text.chars().all(|c| c.is_ascii_digit()))
        || (text.chars().all(|c| c.is_ascii_digit() || c == '.') && text.split('.').count() < 4)
    {
        return Err(format!(
            "invalid ADDR '{raw}': write an IPv4 address in dotted decimal, such as 127.0.0.1"
        ));
    }
    if !text.contains(':') && text.chars().any(|c| c.is_ascii_alphabetic()) {
        let suggestion = if lower == "localhost" || lower.starts_with("localhost.") {
            "ADDR=127.0.0.1 or ADDR=::1".to_owned()
        } else {
            "the address, such as ADDR=192.0.2.10, or a block, such as ADDR=10.0.0.0/8".to_owned()
        };
        return Err(format!(
            "invalid ADDR '{raw}': sockwatch matches addresses, not host names; write \
             {suggestion}"
        ));
    }
    Err(format!(
        "invalid ADDR '{raw}' (expected an IPv4 or IPv6 address, a CIDR block such as \
         10.0.0.0/8, or a glob such as 10.*)"
    ))
}

/// An `ADDR` glob: it matches the address as written (RFC 5952: lower-case
/// hex, digits, dots and colons), so a literal character outside those can
/// never match.
fn address_glob(glob: Glob, raw: &str) -> Result<Glob, String> {
    let bad = glob
        .literal_chars()
        .find(|c| !(c.is_ascii_digit() || matches!(c, 'a'..='f' | '.' | ':')));
    match bad {
        None => Ok(glob),
        Some(c) if c.is_ascii_hexdigit() => Err(format!(
            "ADDR glob '{raw}' can never match: addresses are written in lower case (RFC \
             5952); write {}",
            shown(&raw.to_ascii_lowercase())
        )),
        Some('/') => Err(format!(
            "ADDR glob '{raw}' can never match: a CIDR block takes no glob (write 10.0.0.0/8)"
        )),
        Some(c) => Err(format!(
            "ADDR glob '{raw}' can never match: '{}' is in no address (sockwatch matches \
             addresses, not host names)",
            shown(c.encode_utf8(&mut [0; 4]))
        )),
    }
}

/// The single-valued facts a clause's positive terms have asked for so
/// far: two terms that want different values of one can never both hold.
/// PROTO is not among them (a dual-stack `::` is inet and inet6), nor ADDR
/// (a wildcard reaches many addresses).
#[derive(Default)]
struct Seen {
    /// The ports every term so far accepts, and those terms.
    port: Option<(u32, u32, String)>,
    transport: Option<(Vec<Transport>, String)>,
    v6only: Option<(bool, String)>,
    /// The kinds of endpoint (inet, unix) every term so far allows, and
    /// the first term that narrowed them.
    kinds: Option<([bool; 2], String)>,
}

impl Seen {
    fn add(&mut self, term: &Term, value: &Value<'_>) -> Result<(), String> {
        let op = if term.negated { "!=" } else { "=" };
        let this = format!("{}{op}{}", term.test.field(), shown(value.raw));
        // Which kinds of endpoint (inet, unix) could satisfy the term: keys
        // only one kind has are false on the other, negated or not.
        let kinds = match &term.test {
            Test::Port(_) | Test::Addr(_) | Test::V6only(_) => Some([true, false]),
            Test::SocketPath(_) => Some([false, true]),
            Test::Proto(families) if !term.negated => Some([
                families.iter().any(|f| *f != Family::Unix),
                families.contains(&Family::Unix),
            ]),
            Test::Transport(transports) if !term.negated => Some([
                transports.iter().any(|t| !t.is_unix()),
                transports.iter().any(|t| t.is_unix()),
            ]),
            _ => None,
        };
        if let Some(kinds) = kinds {
            match &mut self.kinds {
                None => self.kinds = Some((kinds, this.clone())),
                Some((kept, first)) => {
                    let both = [kept[0] && kinds[0], kept[1] && kinds[1]];
                    if both == [false, false] {
                        return Err(format!(
                            "{this} can never hold together with {first}: unix sockets have no \
                             PORT, ADDR or V6ONLY, inet sockets no SOCKET_PATH, and each kind \
                             has its own transports"
                        ));
                    }
                    *kept = both;
                }
            }
        }
        if term.negated {
            return Ok(());
        }
        let conflict = |first: &str, what: &str| {
            format!(
                "{this} can never hold together with {first}: an endpoint has one {what} (to \
                 accept either, join two clauses with 'or')"
            )
        };
        match &term.test {
            Test::Port(Numbers::Exact(n)) | Test::Port(Numbers::Range(n, _)) => {
                let high = match &term.test {
                    Test::Port(Numbers::Range(_, high)) => *high,
                    _ => *n,
                };
                let (low, high, first) = match self.port.take() {
                    None => (*n, high, this.clone()),
                    Some((l, h, first)) => (l.max(*n), h.min(high), first),
                };
                if low > high {
                    return Err(conflict(&first, "port"));
                }
                self.port = Some((low, high, first));
            }
            Test::Transport(transports) => match &mut self.transport {
                None => self.transport = Some((transports.clone(), this.clone())),
                Some((kept, first)) => {
                    kept.retain(|t| transports.contains(t));
                    if kept.is_empty() {
                        return Err(conflict(first, "transport"));
                    }
                }
            },
            Test::V6only(wanted) => match &self.v6only {
                None => self.v6only = Some((*wanted, this.clone())),
                Some((kept, first)) if kept != wanted => return Err(conflict(first, "V6ONLY")),
                Some(_) => {}
            },
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::condition::Condition;
    use crate::quote::quote;

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

    fn one_test(text: &str) -> Test {
        let mut terms = clause_terms(text);
        assert_eq!(terms.len(), 1, "{text}");
        terms.remove(0).test
    }

    /// The COMM value a condition's single term compares with exactly.
    fn comm_literal(text: &str) -> String {
        match one_test(text) {
            Test::Comm(glob) => glob.literal().expect("a literal, not a glob"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn positional_values_map_to_proto_port_addr_transport() {
        let terms = clause_terms("socket inet 80 127.0.0.1 tcp");
        let keys: Vec<Field> = terms.iter().map(|t| t.test.field()).collect();
        assert_eq!(keys, Field::POSITIONAL);
        assert_eq!(
            terms[2].test,
            Test::Addr(Addrs::Ip("127.0.0.1".parse().unwrap()))
        );
        let terms = clause_terms("socket inet PORT!=22 ADDR=[::1]");
        assert_eq!(terms[1].test, Test::Port(Numbers::Exact(22)));
        assert!(terms[1].negated);
        assert_eq!(terms[2].test, Test::Addr(Addrs::Ip("::1".parse().unwrap())));
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
            comm_literal(r#"socket COMM="a \"b\" and c""#),
            r#"a "b" and c"#
        );
        assert_eq!(
            one_test("socket PORT=8000-8099"),
            Test::Port(Numbers::Range(8000, 8099))
        );
        assert_eq!(
            one_test("socket ADDR=10.0.0.0/8"),
            Test::Addr(Addrs::Net("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(
            one_test("socket PROTO=inet*"),
            Test::Proto(vec![Family::Inet, Family::Inet6])
        );
        assert_eq!(
            one_test("socket TRANSPORT=u*"),
            Test::Transport(vec![Transport::Udp])
        );
    }

    #[test]
    fn typed_values() {
        assert_eq!(one_test("socket PORT=080"), Test::Port(Numbers::Exact(80)));
        assert_eq!(
            one_test("socket PORT=0080-0080"),
            Test::Port(Numbers::Range(80, 80))
        );
        assert_eq!(one_test("socket PID=01"), Test::Pid(Numbers::Exact(1)));
        assert_eq!(
            one_test("socket ADDR=::ffff:127.0.0.1"),
            Test::Addr(Addrs::Ip("127.0.0.1".parse().unwrap())),
            "an IPv4-mapped address is the IPv4 one"
        );
        assert_eq!(
            one_test("socket ADDR=::ffff:10.0.0.0/104"),
            Test::Addr(Addrs::Net("10.0.0.0/8".parse().unwrap()))
        );
        assert_eq!(one_test("socket V6ONLY=0"), Test::V6only(false));
    }

    #[test]
    fn values_read_back_what_quote_writes() {
        let values = [
            "nginx".to_owned(),
            "my server".to_owned(),
            r#"a"b\c"#.to_owned(),
            String::new(),
            "a\nb".to_owned(),
            text_from_bytes(b"\xff\xfeabc"),
            "\u{1b}".to_owned(),
            "(x) y".to_owned(),
            "caf\u{e9}\t\r".to_owned(),
        ];
        for value in values {
            let text = format!("socket COMM={}", quote(&value));
            assert_eq!(comm_literal(&text), value, "{text}");
        }
        assert_eq!(
            bytes_from_text(&comm_literal(r#"socket COMM="\xff\xfeabc""#)).as_ref(),
            b"\xff\xfeabc"
        );
        assert_eq!(
            comm_literal(r#"socket COMM="\xc3\xa9""#),
            "é",
            "UTF-8 across escapes"
        );
    }

    #[test]
    fn escaped_metacharacters_stay_literal() {
        assert_eq!(comm_literal(r#"socket COMM="a\x2a""#), "a*");
        assert_eq!(comm_literal(r#"socket COMM="a\*""#), "a*");
        assert_eq!(comm_literal(r"socket COMM=a\*"), "a*");
        assert_eq!(comm_literal(r#"socket COMM="a\\""#), r"a\");
        assert_eq!(comm_literal(r#"socket COMM="\x5b1]""#), "[1]");
        let Test::Comm(glob) = one_test(r#"socket COMM="a*""#) else {
            panic!()
        };
        assert!(glob.literal().is_none(), "a quoted * is still a glob");
        assert!(glob.matches("abc"));
        assert_eq!(comm_literal(r#"socket COMM="""#), "", "the empty name");
    }

    #[test]
    fn named_only_when_the_equals_sign_is_bare() {
        assert_eq!(comm_literal(r#"socket COMM="a=b""#), "a=b");
        assert_eq!(comm_literal("socket COMM=a=b"), "a=b");
        assert_eq!(
            one_test(r#"socket P""ORT=80"#),
            Test::Port(Numbers::Exact(80))
        );
        let (_, message) = error(r#"socket "PORT=80""#);
        assert!(
            message.contains(r#"invalid PROTO '"PORT=80"'"#),
            "{message}"
        );
    }

    #[test]
    fn errors_point_at_the_problem() {
        let cases: [(&str, usize, &str); 25] = [
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
                "unknown key 'PROT' (known keys: PROTO, PORT, ADDR, SOCKET_PATH, TRANSPORT, V6ONLY, NETNS, PID, COMM)",
            ),
            (
                "socket PORT=70000",
                13,
                "PORT 70000 is out of range 1-65535",
            ),
            ("socket PORT=-5", 13, "invalid PORT '-5'"),
            ("socket PORT=90-80", 13, "empty PORT range 90-80"),
            (
                "socket PROTO=inet7",
                14,
                "invalid PROTO 'inet7' (expected inet, inet6 or unix)",
            ),
            ("socket tcp PORT=80", 8, "write TRANSPORT=tcp"),
            ("socket inet7", 8, "invalid PROTO 'inet7'"),
            (
                "socket TRANSPORT=sctp",
                18,
                "invalid TRANSPORT 'sctp' (expected tcp, udp, stream, seqpacket or dgram)",
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
            (r#"socket P""ORT=x"#, 15, "invalid PORT 'x'"),
            (r#"socket PORT="x""#, 13, r#"invalid PORT '"x"'"#),
        ];
        for (text, column, message) in cases {
            let (got_column, got) = error(text);
            assert!(got.contains(message), "{text:?}: {got:?} lacks {message:?}");
            assert_eq!(got_column, column, "{text:?}: {got}");
        }
    }

    #[test]
    fn terms_that_can_never_hold() {
        let cases: &[(&str, usize, &[&str])] = &[
            (
                "socket ADDR=localhost",
                13,
                &["not host names", "ADDR=127.0.0.1", "ADDR=::1"],
            ),
            ("socket ADDR=example.com", 13, &["not host names"]),
            (
                "socket ADDR=[::]:3000",
                13,
                &["with a port", "ADDR=:: PORT=3000"],
            ),
            ("socket ADDR=127.0.0.1:80", 13, &["ADDR=127.0.0.1 PORT=80"]),
            ("socket ADDR=0x7f000001", 13, &["dotted decimal"]),
            ("socket ADDR=2130706433", 13, &["dotted decimal"]),
            ("socket ADDR=127.1", 13, &["dotted decimal"]),
            (
                "socket ADDR=fe80::1%lo",
                13,
                &["zone ids", "'%lo'", "ADDR=fe80::1"],
            ),
            ("socket ADDR=[::1]/128", 13, &["brackets", "ADDR=::1/128"]),
            ("socket ADDR=local*", 13, &["'l' is in no address"]),
            ("socket ADDR=FE80::*", 13, &["lower case", "fe80::*"]),
            ("socket ADDR=10.0.*/8", 13, &["CIDR block takes no glob"]),
            (
                "socket PORT=80 PORT=81",
                16,
                &["PORT=81 can never hold together with PORT=80", "'or'"],
            ),
            ("socket inet 80 PORT=81", 16, &["with PORT=80"]),
            ("socket PORT=80-90 PORT=91-100", 19, &["PORT=91-100"]),
            ("socket TRANSPORT=tcp TRANSPORT=udp", 22, &["one transport"]),
            ("socket V6ONLY=0 V6ONLY=1", 17, &["one V6ONLY"]),
            (
                "socket PROTO=unix PORT=80",
                19,
                &["PORT=80 can never hold together with PROTO=unix"],
            ),
            ("socket unix 80", 13, &["with PROTO=unix", "no PORT"]),
            ("socket PROTO=unix ADDR!=::1", 19, &["ADDR!=::1"]),
            ("socket PROTO=inet SOCKET_PATH=/x", 19, &["no SOCKET_PATH"]),
            ("socket PORT=80 SOCKET_PATH=/x", 16, &["SOCKET_PATH=/x"]),
            (
                "socket TRANSPORT=tcp SOCKET_PATH=/x",
                22,
                &["own transports"],
            ),
            ("socket PROTO=unix TRANSPORT=udp", 19, &["TRANSPORT=udp"]),
            (
                "socket SOCKET_PATH=",
                20,
                &["expected a value for SOCKET_PATH"],
            ),
            ("socket PORT=0", 13, &["PORT 0 never listens"]),
            ("socket PORT=000", 13, &["PORT 0 never listens"]),
            ("socket PORT=0-0", 13, &["only port 0"]),
            ("socket PORT=eighty*", 13, &["'e' is not a digit"]),
            ("socket PORT=abc*", 13, &["'a' is not a digit"]),
            (
                "socket PORT=8*-90",
                13,
                &["a range takes two numbers, not globs"],
            ),
            ("socket PORT=08*", 13, &["matches no port", "leading zeros"]),
            ("socket PORT=??????", 13, &["matches no port"]),
            ("socket PID=0", 12, &["PID 0 is not a process"]),
            ("socket PID=x*", 12, &["'x' is not a digit"]),
            ("socket PID=0*", 12, &["matches no process id"]),
            ("socket PID=99999999", 12, &["highest process id"]),
            (r"socket TRANSPORT=tcp\", 21, &["dangling backslash"]),
            (
                "socket TRANSPORT=x*",
                18,
                &["matches none of tcp, udp, stream, seqpacket, dgram"],
            ),
            (
                "socket PROTO=x*",
                14,
                &["matches none of inet, inet6, unix"],
            ),
            ("socket V6ONLY=*", 15, &["expected 0 or 1"]),
            (
                "socket COMM=systemd-resolved",
                13,
                &["15 bytes", "COMM=systemd-resolve"],
            ),
            ("socket COMM=????????????????*", 13, &["15 bytes"]),
            ("socket COMM=", 13, &["expected a value for COMM"]),
            (r#"socket PORT="""#, 13, &["expected a value for PORT"]),
        ];
        for (text, column, parts) in cases {
            let (got_column, got) = error(text);
            for part in *parts {
                assert!(got.contains(part), "{text:?}: {got:?} lacks {part:?}");
            }
            assert_eq!(got_column, *column, "{text:?}: {got}");
        }
    }

    #[test]
    fn terms_that_can_hold_are_kept() {
        for text in [
            "socket PROTO=inet PROTO=inet6",
            "socket PORT=80 PORT=80",
            "socket PORT=80 PORT=70-90",
            "socket PORT=80 PORT!=81",
            "socket PORT=8* PORT=80",
            "socket ADDR=127.0.0.1 ADDR=10.0.0.1",
            "socket TRANSPORT=tcp TRANSPORT=t*",
            "socket PORT=0-80",
            "socket COMM=systemd-resolve",
            "socket COMM=\"\"",
            "socket ADDR=fe80::*",
            "socket ADDR=[0-9]*.*",
            "socket ADDR=0.0.0.0/0",
            "socket ADDR=::/0",
            "socket PID=4194304",
            "(socket PORT=80) and (socket PORT=81)",
            "socket PORT=80 or socket PORT=81",
        ] {
            assert!(Condition::parse(text).is_ok(), "{text}: {:?}", error(text));
        }
    }

    #[test]
    fn messages_a_new_user_can_act_on() {
        let cases: [(&str, usize, &str); 8] = [
            (
                r#""socket" PORT=80"#,
                1,
                r#"the event name is written bare: socket, not "socket""#,
            ),
            (
                "socket PORT=80 AND socket PORT=81",
                16,
                "operators are lower case: write 'and', not 'AND'",
            ),
            ("socket PORT=80 Or socket PORT=81", 16, "write 'or'"),
            (
                "socket port=80",
                8,
                "unknown key 'port': keys are upper case, write PORT=80",
            ),
            ("socket 80", 8, "the first one is PROTO: write PORT=80"),
            ("socket 127.0.0.1", 8, "write ADDR=127.0.0.1"),
            (
                "PORT=80",
                1,
                "a condition starts with the event name: write 'socket PORT=80'",
            ),
            ("SOCKET PORT=80", 1, "event names are lower case"),
        ];
        for (text, column, message) in cases {
            let (got_column, got) = error(text);
            assert!(got.contains(message), "{text:?}: {got:?} lacks {message:?}");
            assert_eq!(got_column, column, "{text:?}: {got}");
        }
        assert!(error("80").1.contains("write 'socket PORT=80'"));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let text = "(".repeat(50_000);
        let (column, message) = error(&text);
        assert_eq!(column, MAX_DEPTH + 1);
        assert!(message.contains("nest deeper than 64"), "{message}");
        let ok = format!("{}socket{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(Condition::parse(&ok).is_ok());
        let too_deep = format!("({ok})");
        assert!(Condition::parse(&too_deep).is_err());
    }

    #[test]
    fn long_conditions_are_clipped_in_errors() {
        let text = format!("socket PORT={}", "x".repeat(1_000_000));
        let e = Condition::parse(&text).unwrap_err();
        let rendered = e.render(&text);
        assert!(rendered.len() < 400, "{} bytes", rendered.len());
        assert!(rendered.contains("invalid PORT 'xxx"), "{rendered}");
        let lines: Vec<&str> = rendered.lines().collect();
        assert_eq!(
            lines[1],
            format!("  socket PORT={}...", "x".repeat(WINDOW - 12))
        );
        assert_eq!(lines[2], format!("  {}^", " ".repeat(12)));

        // The caret in the middle of a long line: cut on both sides.
        let text = format!("{}socket PORT=x{}", "(".repeat(50), ")".repeat(1000));
        let rendered = Condition::parse(&text).unwrap_err().render(&text);
        let lines: Vec<&str> = rendered.lines().collect();
        assert!(
            lines[1].starts_with("  ...") && lines[1].ends_with("..."),
            "{rendered}"
        );
        let caret = lines[2].find('^').unwrap();
        assert_eq!(&lines[1][caret..caret + 1], "x", "{rendered}");
    }

    #[test]
    fn echoed_words_cannot_forge_lines() {
        let text = "socket PROTO=\"x\nsockwatch: ready\" PORT=1";
        let e = Condition::parse(text).unwrap_err();
        let message = e.to_string();
        assert!(!message.contains('\n'), "{message}");
        assert!(message.contains(r"x\nsockwatch: ready"), "{message}");
        let text = "socket COMM=\"\u{1b}[2J\" PORT=x";
        let rendered = Condition::parse(text).unwrap_err().render(text);
        assert!(!rendered.contains('\u{1b}'), "{rendered:?}");
        let lines: Vec<&str> = rendered.lines().collect();
        let caret = lines[2].find('^').unwrap();
        assert_eq!(&lines[1][caret..caret + 1], "x", "{rendered}");
    }

    /// Random conditions from the pieces of the syntax: parsing, rendering
    /// the error and evaluating never panic, and errors stay on their lines.
    #[test]
    fn nothing_panics_on_input() {
        use crate::condition::{Facts, OwnerFact};
        use crate::endpoint::Endpoint;
        const PIECES: [&str; 34] = [
            "socket",
            " ",
            "\n",
            "(",
            ")",
            "and",
            "or",
            "PORT=",
            "ADDR=",
            "PROTO=",
            "COMM=",
            "PID=",
            "TRANSPORT=",
            "V6ONLY=",
            "!=",
            "=",
            "\"",
            "\\",
            "\\x",
            "ff",
            "8",
            "0",
            "-",
            "*",
            "?",
            "[",
            "]",
            "!",
            ":",
            ".",
            "/",
            "%",
            "\u{1b}",
            "\u{10FFFF}",
        ];
        let endpoints: Vec<Endpoint> = ["0.0.0.0", "::", "::ffff:127.0.0.1", "::1"]
            .iter()
            .map(|a| Endpoint::inet(Transport::Tcp, a.parse().unwrap(), 80))
            .collect();
        let facts: Vec<Facts<'_>> = endpoints
            .iter()
            .map(|endpoint| Facts {
                endpoint,
                v6only: None,
                owner: OwnerFact::Unknown,
                path_current: crate::condition::Truth::Yes,
                trusted: true,
            })
            .collect();
        // A fixed xorshift: the same cases every run.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let len = next() % 12;
            let text: String = (0..len)
                .map(|_| PIECES[(next() % PIECES.len() as u64) as usize])
                .collect();
            match Condition::parse(&text) {
                Ok(condition) => {
                    let _ = condition.evaluate(&facts);
                    let _ = condition.tables();
                }
                Err(e) => {
                    let rendered = e.render(&text);
                    assert_eq!(rendered.lines().count(), 3, "{text:?}: {rendered}");
                    assert!(!rendered.contains('\u{1b}'), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn more_errors() {
        assert!(error(r#"socket COMM="x"#).1.contains("unterminated quote"));
        assert!(error(r#"socket COMM="x\"#).1.contains("unterminated quote"));
        assert!(error(r#"socket COMM="\x4""#).1.contains("invalid escape"));
        assert!(error(r#"socket COMM="\xzz""#).1.contains("invalid escape"));
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
            "line 2, column 12: unknown key 'PROT' (known keys: PROTO, PORT, ADDR, SOCKET_PATH, TRANSPORT, V6ONLY, NETNS, PID, COMM)"
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
