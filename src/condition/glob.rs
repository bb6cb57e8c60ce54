//! fnmatch(3)-style globs: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`, over
//! characters. Small enough to own rather than pull in a path-oriented glob
//! crate: socket fields have no `/` to treat specially.
//!
//! The parser resolves escapes (`\*`, `"\x2a"`) before a glob is compiled:
//! it hands over each character with whether it was escaped, and an escaped
//! character is always literal. A glob is compiled once, when the condition
//! is parsed, and knows whether it has any metacharacter at all (a plain
//! word is then compared as the typed value it names).

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Glob {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    /// A literal character.
    Char(char),
    /// `?`: any one character.
    One,
    /// `*`: any run of characters (consecutive stars are one).
    Star,
    /// `[...]`: one character in (or, negated, not in) the ranges.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Part {
    /// Whether this part, other than a star, takes `c`.
    fn takes(&self, c: char) -> bool {
        match self {
            Part::Char(x) => *x == c,
            Part::One => true,
            Part::Star => false,
            Part::Class { negated, ranges } => {
                ranges.iter().any(|(low, high)| (*low..=*high).contains(&c)) != *negated
            }
        }
    }
}

impl Glob {
    /// Compiles characters, each with whether it was escaped (and so is
    /// literal whatever it is).
    pub(crate) fn compile(chars: &[(char, bool)]) -> Glob {
        let mut parts = Vec::new();
        let mut i = 0;
        while let Some(&(c, escaped)) = chars.get(i) {
            if escaped {
                parts.push(Part::Char(c));
                i += 1;
                continue;
            }
            match c {
                '*' => {
                    if parts.last() != Some(&Part::Star) {
                        parts.push(Part::Star);
                    }
                    i += 1;
                }
                '?' => {
                    parts.push(Part::One);
                    i += 1;
                }
                '[' => match class(chars, i) {
                    Some((part, next)) => {
                        parts.push(part);
                        i = next;
                    }
                    // An unclosed `[` is a literal, as fnmatch(3) has it.
                    None => {
                        parts.push(Part::Char('['));
                        i += 1;
                    }
                },
                c => {
                    parts.push(Part::Char(c));
                    i += 1;
                }
            }
        }
        Glob { parts }
    }

    /// The text a glob without metacharacters stands for; `None` for a real
    /// glob.
    pub(crate) fn literal(&self) -> Option<String> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Char(c) => Some(*c),
                _ => None,
            })
            .collect()
    }

    /// The literal characters outside bracket expressions.
    pub(crate) fn literal_chars(&self) -> impl Iterator<Item = char> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Char(c) => Some(*c),
            _ => None,
        })
    }

    /// The fewest characters a matching text has.
    fn min_chars(&self) -> usize {
        self.parts.iter().filter(|p| **p != Part::Star).count()
    }

    /// The fewest UTF-8 bytes a matching text has.
    pub(crate) fn min_bytes(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                // A mapped byte stands for one byte.
                Part::Char(c) => crate::quote::mapped_byte(*c).map_or(c.len_utf8(), |_| 1),
                Part::Star => 0,
                _ => 1,
            })
            .sum()
    }

    /// Whether `text` matches as a whole. Iterative, with one backtrack point
    /// for the last `*`: linear in practice, no recursion for hostile
    /// patterns.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let text: Vec<char> = text.chars().collect();
        let parts = &self.parts;
        let (mut p, mut t) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while t < text.len() {
            match parts.get(p) {
                Some(Part::Star) => {
                    star = Some((p, t));
                    p += 1;
                    continue;
                }
                Some(part) if part.takes(text[t]) => {
                    p += 1;
                    t += 1;
                    continue;
                }
                _ => {}
            }
            match star {
                Some((star_p, star_t)) => {
                    p = star_p + 1;
                    t = star_t + 1;
                    star = Some((star_p, star_t + 1));
                }
                None => return false,
            }
        }
        parts[p..].iter().all(|part| *part == Part::Star)
    }

    /// Whether some number in 1..=`max`, written in decimal without leading
    /// zeros (as ports and process ids are), matches. A search over digit
    /// prefixes that drops every prefix no continuation can match: it visits
    /// few of the numbers, and answers at the first match.
    pub(crate) fn matches_some_number(&self, max: u32) -> bool {
        let digits = max.to_string().len();
        if self.min_chars() > digits {
            return false;
        }
        // With stars collapsed, at most `2 * digits + 1` parts remain: the
        // states fit a bit mask.
        debug_assert!(self.parts.len() < 64);
        let start = self.closure(1);
        self.search(0, start, max)
    }

    fn search(&self, prefix: u32, states: u64, max: u32) -> bool {
        let first = if prefix == 0 { 1 } else { 0 };
        for digit in first..=9u32 {
            let number = prefix * 10 + digit;
            if number > max {
                return false;
            }
            let next = self.step(states, char::from_digit(digit, 10).expect("a digit"));
            if next == 0 {
                continue;
            }
            if next & (1 << self.parts.len()) != 0 {
                return true;
            }
            if number <= max / 10 && self.search(number, next, max) {
                return true;
            }
        }
        false
    }

    /// The states reachable from `states` without reading: past stars.
    fn closure(&self, mut states: u64) -> u64 {
        for (i, part) in self.parts.iter().enumerate() {
            if *part == Part::Star && states & (1 << i) != 0 {
                states |= 1 << (i + 1);
            }
        }
        states
    }

    /// The states after reading `c`.
    fn step(&self, states: u64, c: char) -> u64 {
        let mut next = 0;
        for (i, part) in self.parts.iter().enumerate() {
            if states & (1 << i) == 0 {
                continue;
            }
            if *part == Part::Star {
                next |= 1 << i;
            } else if part.takes(c) {
                next |= 1 << (i + 1);
            }
        }
        self.closure(next)
    }
}

/// The bracket expression starting at `chars[open]`, and the index after
/// it; `None` when it is never closed.
fn class(chars: &[(char, bool)], open: usize) -> Option<(Part, usize)> {
    let unescaped = |i: usize, c: char| chars.get(i).is_some_and(|&(x, e)| !e && x == c);
    let mut i = open + 1;
    let negated = unescaped(i, '!') || unescaped(i, '^');
    if negated {
        i += 1;
    }
    let mut ranges = Vec::new();
    let mut first = true;
    loop {
        let &(start, _) = chars.get(i)?;
        if unescaped(i, ']') && !first {
            return Some((Part::Class { negated, ranges }, i + 1));
        }
        first = false;
        if unescaped(i + 1, '-') && chars.get(i + 2).is_some() && !unescaped(i + 2, ']') {
            ranges.push((start, chars[i + 2].0));
            i += 3;
        } else {
            ranges.push((start, start));
            i += 1;
        }
    }
}

#[cfg(test)]
pub(crate) fn compile_str(pattern: &str) -> Glob {
    // `\c` escapes c, as the parser's unquoted words have it.
    let mut chars = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => chars.push((it.next().expect("escaped character"), true)),
            c => chars.push((c, false)),
        }
    }
    Glob::compile(&chars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, text: &str) -> bool {
        compile_str(pattern).matches(text)
    }

    #[test]
    fn globs() {
        let cases = [
            ("*", "", true),
            ("*", "anything", true),
            ("80", "80", true),
            ("80", "8080", false),
            ("80*", "8080", true),
            ("*80", "8080", true),
            ("8?8?", "8080", true),
            ("8?8?", "808", false),
            ("[0-9]*", "443", true),
            ("[!0-9]*", "443", false),
            ("[!0-9]*", "x", true),
            ("[^0-9]*", "x", true),
            ("[]]", "]", true),
            ("[ab", "[ab", true),
            (r"\*", "*", true),
            (r"\*", "x", false),
            (r"\[ab]", "[ab]", true),
            (r"\[ab]", "a", false),
            (r"[a\]]", "]", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("ng*x", "nginx", true),
            ("*.*.*.*", "127.0.0.1", true),
            ("fe80::*", "fe80::1", true),
            ("**a", "ba", true),
        ];
        for (pattern, text, expected) in cases {
            assert_eq!(matches(pattern, text), expected, "{pattern:?} ~ {text:?}");
        }
    }

    #[test]
    fn hostile_patterns_stay_fast() {
        let pattern = "*a".repeat(50);
        let text = "a".repeat(60) + "b";
        assert!(!matches(&pattern, &text));
    }

    #[test]
    fn literals() {
        assert_eq!(compile_str("inet6").literal().as_deref(), Some("inet6"));
        assert_eq!(compile_str(r"a\*").literal().as_deref(), Some("a*"));
        assert_eq!(compile_str("80*").literal(), None);
        assert_eq!(compile_str("[0-9]").literal(), None);
        assert_eq!(compile_str("[ab").literal().as_deref(), Some("[ab"));
        assert_eq!(compile_str("").literal().as_deref(), Some(""));
        assert_eq!(compile_str("a*?é").min_bytes(), 4);
    }

    #[test]
    fn numbers() {
        let some = |pattern: &str, max| compile_str(pattern).matches_some_number(max);
        assert!(some("8*", 65535));
        assert!(some("*", 65535));
        assert!(some("?", 65535));
        assert!(some("[0-9][0-9]", 65535));
        assert!(some("6553?", 65535));
        assert!(some("*0", 65535), "10");
        assert!(!some("08*", 65535), "no leading zeros");
        assert!(!some("0", 65535));
        assert!(!some("abc*", 65535));
        assert!(!some("eighty*", 65535));
        assert!(!some("??????", 65535), "six digits");
        assert!(!some("6554?", 65535));
        assert!(!some("9????", 65535));
        assert!(!some("*x", 65535));
        assert!(some("419430?", 4_194_304));
        assert!(!some("5??????", 4_194_304));
        assert!(!some(&"*".repeat(10_000), 0));
    }
}
