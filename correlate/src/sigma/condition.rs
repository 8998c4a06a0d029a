//! Sigma's condition grammar (sigma-rules-specification.md, Condition).
//!
//! Precedence from loosest to tightest: `or`, `and`, `not`, `1 of` /
//! `all of`, parentheses:
//!
//! ```text
//! cond     := and_expr ( "or" and_expr )*
//! and_expr := not_expr ( "and" not_expr )*
//! not_expr := "not" not_expr | primary
//! primary  := "(" cond ")" | ("1" | "any" | "all") "of" ("them" | PATTERN) | IDENT
//! ```
//!
//! Keywords are case-insensitive. A pattern is a search identifier with `*`
//! wildcards; `them` is every search identifier not starting with `_`.
//! The deprecated pipe aggregations (`| count() by …`, `| near`) are
//! refused: correlation rules replace them.

use std::fmt;

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// A search identifier.
    Search(String),
    /// Both.
    And(Box<Condition>, Box<Condition>),
    /// Either.
    Or(Box<Condition>, Box<Condition>),
    /// Not.
    Not(Box<Condition>),
    /// At least one of the searches the pattern names (`None`: `them`).
    OneOf(Option<String>),
    /// All of the searches the pattern names (`None`: `them`).
    AllOf(Option<String>),
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Condition::Search(s) => f.write_str(s),
            Condition::And(a, b) => write!(f, "({a} and {b})"),
            Condition::Or(a, b) => write!(f, "({a} or {b})"),
            Condition::Not(a) => write!(f, "not {a}"),
            Condition::OneOf(p) => write!(f, "1 of {}", p.as_deref().unwrap_or("them")),
            Condition::AllOf(p) => write!(f, "all of {}", p.as_deref().unwrap_or("them")),
        }
    }
}

/// Why a condition does not parse: the message and the character offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionError {
    /// What is wrong.
    pub message: String,
    /// Where, in characters from the start of the condition.
    pub offset: usize,
}

impl fmt::Display for ConditionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at character {})", self.message, self.offset + 1)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Pipe,
    Word(String),
}

fn tokenize(text: &str) -> Vec<(usize, Token)> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(at, c)) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '(' => {
                tokens.push((at, Token::Open));
                chars.next();
            }
            ')' => {
                tokens.push((at, Token::Close));
                chars.next();
            }
            '|' => {
                tokens.push((at, Token::Pipe));
                chars.next();
            }
            _ => {
                let mut word = String::new();
                while let Some(&(_, c)) = chars.peek() {
                    if c.is_whitespace() || matches!(c, '(' | ')' | '|') {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push((at, Token::Word(word)));
            }
        }
    }
    tokens
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    at: usize,
    end: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at).map(|(_, t)| t)
    }

    fn offset(&self) -> usize {
        self.tokens.get(self.at).map_or(self.end, |(o, _)| *o)
    }

    fn error<T>(&self, message: impl Into<String>) -> Result<T, ConditionError> {
        Err(ConditionError {
            message: message.into(),
            offset: self.offset(),
        })
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token::Word(w)) if w.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.and()?;
        while self.keyword("or") {
            self.at += 1;
            let right = self.and()?;
            left = Condition::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, ConditionError> {
        let mut left = self.not()?;
        while self.keyword("and") {
            self.at += 1;
            let right = self.not()?;
            left = Condition::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Condition, ConditionError> {
        if self.keyword("not") {
            self.at += 1;
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Condition, ConditionError> {
        match self.peek().cloned() {
            None => self.error("the condition ends where a search identifier was expected"),
            Some(Token::Open) => {
                self.at += 1;
                let inner = self.or()?;
                if self.peek() != Some(&Token::Close) {
                    return self.error("expected ')'");
                }
                self.at += 1;
                Ok(inner)
            }
            Some(Token::Close) => self.error("unexpected ')'"),
            Some(Token::Pipe) => self.error(
                "pipe aggregations (`| count() …`, `| near …`) are deprecated; write a correlation rule",
            ),
            Some(Token::Word(word)) => {
                let lower = word.to_ascii_lowercase();
                let quantifier = match lower.as_str() {
                    "1" | "any" => Some(false),
                    "all" => Some(true),
                    _ => None,
                };
                let followed_by_of = matches!(
                    self.tokens.get(self.at + 1),
                    Some((_, Token::Word(w))) if w.eq_ignore_ascii_case("of")
                );
                if let Some(all) = quantifier.filter(|_| followed_by_of) {
                    self.at += 2;
                    let target = match self.peek().cloned() {
                        Some(Token::Word(t)) if t.eq_ignore_ascii_case("them") => None,
                        Some(Token::Word(t)) if !is_keyword(&t) => Some(t),
                        _ => return self.error("expected `them` or a search pattern after `of`"),
                    };
                    self.at += 1;
                    return Ok(if all {
                        Condition::AllOf(target)
                    } else {
                        Condition::OneOf(target)
                    });
                }
                if followed_by_of {
                    return self.error(format!(
                        "`{word} of`: only `1 of` and `all of` are Sigma (use `1 of` with a correlation rule for counts)"
                    ));
                }
                if is_keyword(&word) {
                    return self.error(format!("unexpected `{word}`"));
                }
                self.at += 1;
                Ok(Condition::Search(word))
            }
        }
    }
}

fn is_keyword(word: &str) -> bool {
    ["and", "or", "not", "of", "them"]
        .iter()
        .any(|k| word.eq_ignore_ascii_case(k))
}

/// Parses one condition string.
pub fn parse(text: &str) -> Result<Condition, ConditionError> {
    let mut parser = Parser {
        tokens: tokenize(text),
        at: 0,
        end: text.chars().count(),
    };
    let condition = parser.or()?;
    if parser.peek() == Some(&Token::Pipe) {
        return parser.error(
            "pipe aggregations (`| count() …`, `| near …`) are deprecated; write a correlation rule",
        );
    }
    if parser.at < parser.tokens.len() {
        return parser.error("unexpected text after the end of the condition");
    }
    Ok(condition)
}

/// Whether a search identifier matches a condition pattern (`*` wildcards).
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[char], n: &[char]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some('*'), _) => go(&p[1..], n) || (!n.is_empty() && go(p, &n[1..])),
            (Some(a), Some(b)) if a == b => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    go(&p, &n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn show(text: &str) -> String {
        parse(text).map_or_else(|e| format!("error: {e}"), |c| c.to_string())
    }

    #[test]
    fn precedence_and_quantifiers() {
        assert_eq!(show("a or b and not c"), "(a or (b and not c))");
        assert_eq!(show("(a or b) and not c"), "((a or b) and not c)");
        assert_eq!(show("not a and b"), "(not a and b)");
        assert_eq!(
            show("1 of selection_* and not all of filter_*"),
            "(1 of selection_* and not all of filter_*)"
        );
        assert_eq!(show("all of them"), "all of them");
        assert_eq!(show("ANY OF sel* OR Not x"), "(1 of sel* or not x)");
    }

    #[test]
    fn errors_say_what_and_where() {
        assert!(show("a and").contains("ends where"), "{}", show("a and"));
        assert!(show("(a or b").contains("expected ')'"));
        assert!(show("a b").contains("after the end"));
        assert!(show("selection | count() by x > 5").contains("deprecated"));
        assert!(show("2 of sel*").contains("only `1 of` and `all of`"));
        let e = parse("a and )").expect_err("bad");
        assert_eq!(e.offset, 6);
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("selection_*", "selection_img"));
        assert!(pattern_matches("*_img", "selection_img"));
        assert!(!pattern_matches("selection_*", "filter_img"));
        assert!(pattern_matches("sel", "sel"));
    }
}
