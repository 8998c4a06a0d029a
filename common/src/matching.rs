//! Text and address matching shared by the detection engine (`correlate`)
//! and the hunting functions (`query`), so a Sigma wildcard or a CIDR block
//! means the same in a rule and in SQL.

use std::net::IpAddr;

/// One piece of a Sigma wildcard pattern.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Piece {
    /// Plain text (escapes resolved).
    Text(String),
    /// `*`: any run of characters, possibly empty.
    AnyRun,
    /// `?`: exactly one character.
    AnyChar,
}

/// Splits a Sigma string into text and wildcards.
///
/// The escape rules of the Sigma specification ("Escape Character"): `\`
/// escapes `*`, `?` and `\` itself; a backslash before any other character
/// is a plain backslash, so `C:\Windows` and `C:\\Windows` are the same
/// text, `\*` is a plain star and `\\*` a backslash followed by a wildcard.
/// Adjacent text pieces are merged.
pub fn wildcard_pieces(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    text.push(next);
                    chars.next();
                }
                _ => text.push('\\'),
            },
            '*' | '?' => {
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(if c == '*' {
                    Piece::AnyRun
                } else {
                    Piece::AnyChar
                });
            }
            other => text.push(other),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    pieces
}

/// The pieces as an anchored regular expression (dot matches newlines; no
/// case flag: callers add `(?i)` or match lowercase text).
pub fn pieces_regex(pieces: &[Piece]) -> String {
    let mut re = String::from("^(?s:");
    for piece in pieces {
        match piece {
            Piece::Text(t) => re.push_str(&regex::escape(t)),
            Piece::AnyRun => re.push_str(".*"),
            Piece::AnyChar => re.push('.'),
        }
    }
    re.push_str(")$");
    re
}

/// A Sigma wildcard pattern as an anchored regular expression.
pub fn wildcard_regex(pattern: &str) -> String {
    pieces_regex(&wildcard_pieces(pattern))
}

/// A CIDR block: a network address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `a.b.c.d/n`, `x::y/n`, or a bare address (a single host).
    pub fn parse(text: &str) -> Option<Cidr> {
        let text = text.trim();
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix.parse::<u8>().ok()?)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        (prefix <= max).then_some(Cidr { network, prefix })
    }

    /// Whether `ip` lies in the block (IPv4-mapped IPv6 addresses count as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network.to_canonical(), ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_follow_the_specification() {
        assert_eq!(
            wildcard_pieces(r"C:\Windows\*"),
            vec![Piece::Text(r"C:\Windows*".into())]
        );
        assert_eq!(
            wildcard_pieces(r"C:\\Windows\\*"),
            vec![Piece::Text(r"C:\Windows\".into()), Piece::AnyRun]
        );
        assert_eq!(
            wildcard_pieces(r"a\\\*b"),
            vec![Piece::Text(r"a\*b".into())]
        );
        assert_eq!(
            wildcard_pieces(r"\\\\server"),
            vec![Piece::Text(r"\\server".into())]
        );
        assert_eq!(
            wildcard_pieces("*a?b"),
            vec![
                Piece::AnyRun,
                Piece::Text("a".into()),
                Piece::AnyChar,
                Piece::Text("b".into())
            ]
        );
        assert_eq!(wildcard_pieces(r"end\"), vec![Piece::Text(r"end\".into())]);
    }

    #[test]
    fn regex_is_anchored_and_literal() {
        let re = regex::Regex::new(&wildcard_regex(r"*\cmd.exe")).expect("regex");
        assert!(re.is_match(r"C:\Windows\cmd.exe"));
        assert!(!re.is_match(r"C:\Windows\cmdXexe"));
        assert!(!re.is_match(r"C:\Windows\cmd.exe.bak"));
    }
}
