//! The syntax of a list's `filter` (AIP-160, <https://google.aip.dev/160>): the text a client
//! writes parsed into a tree in which every restriction and every value knows the position it
//! was written at, so that whatever refuses it later (an unknown field, a value of the wrong
//! type, a comparison no index serves) names where. What a restriction may compare is the
//! resource's to decide (`TicketQuery`), not the syntax's: this module knows no field.
//!
//! The grammar, with AIP-160's precedence (OR binds tighter than AND, and a sequence of terms
//! without an operator is their AND):
//!
//! ```text
//! filter      = [ expression ]
//! expression  = sequence { "AND" sequence }
//! sequence    = factor { factor }
//! factor      = term { "OR" term }
//! term        = "NOT" term | "-" simple | simple
//! simple      = "(" expression ")" | restriction
//! restriction = member comparator argument
//! comparator  = "=" | "!=" | "<" | "<=" | ">" | ">=" | ":"
//! argument    = value | "(" value { ["AND" | "OR"] value } ")"
//! value       = word | string | call
//! call        = word "(" [ value { "," value } ] ")"      (no space before "(")
//! ```
//!
//! A word is a run of characters other than spaces, quotes, parentheses, commas and the
//! comparators' characters (`status`, `custom_fields.plan`, `open`, `*`, `-24h`); a string is
//! written in double or single quotes, with `\` escaping the quote and itself. `AND`, `OR` and
//! `NOT` are keywords only in capitals and unquoted. A restriction without a comparator (AIP's
//! "global" search of every field) is refused: a filter names the field it compares.

use std::fmt;

/// The longest filter accepted, in characters: a saved view's filter is a line, not a document.
pub const MAX_FILTER_CHARS: usize = 2_000;

/// The most restrictions one filter may hold: each costs a condition of the statement.
pub const MAX_RESTRICTIONS: usize = 50;

/// How deeply parentheses and `NOT`s may nest.
pub const MAX_DEPTH: usize = 8;

/// A parsed filter: `None` for an empty one (everything matches).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub root: Option<Expr>,
}

/// A character position in the filter's text, counted from 1 (what an error names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position(pub usize);

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// An expression of the filter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// Every part holds (two or more parts).
    And(Vec<Expr>),
    /// Some part holds (two or more parts).
    Or(Vec<Expr>),
    /// The expression does not hold; the position of its `NOT` or `-`.
    Not(Box<Expr>, Position),
    Restriction(Restriction),
}

/// `member comparator argument`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Restriction {
    /// The field compared, as its dot-separated path (`custom_fields.plan`).
    pub member: Vec<String>,
    pub member_at: Position,
    pub comparator: Comparator,
    pub argument: Argument,
}

impl Restriction {
    /// The member as written (`custom_fields.plan`).
    pub fn member_path(&self) -> String {
        self.member.join(".")
    }
}

/// How a member is compared with its argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparator {
    Equal,
    NotEqual,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
    /// `:`, AIP's "has": a repeated field holds the value, or (with `*`) the field is set.
    Has,
}

impl Comparator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Equal => "=",
            Self::NotEqual => "!=",
            Self::Less => "<",
            Self::LessOrEqual => "<=",
            Self::Greater => ">",
            Self::GreaterOrEqual => ">=",
            Self::Has => ":",
        }
    }
}

/// What a member is compared with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Argument {
    One(Value),
    /// `(a OR b)`: the comparison holds for one of the values.
    AnyOf(Vec<Value>),
    /// `(a AND b)` or `(a b)`: it holds for each of them.
    AllOf(Vec<Value>),
}

/// A value as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Value {
    /// An unquoted word (`open`, `*`, `10`, `true`).
    Word { text: String, at: Position },
    /// A quoted string, unescaped.
    Quoted { text: String, at: Position },
    /// `name(args)`, e.g. `now(-24h)`.
    Call {
        name: String,
        args: Vec<Value>,
        at: Position,
    },
}

impl Value {
    pub fn at(&self) -> Position {
        match self {
            Self::Word { at, .. } | Self::Quoted { at, .. } | Self::Call { at, .. } => *at,
        }
    }

    /// The text of a word or a string; `None` for a call.
    pub fn text(&self) -> Option<&str> {
        match self {
            Self::Word { text, .. } | Self::Quoted { text, .. } => Some(text),
            Self::Call { .. } => None,
        }
    }

    /// Whether this is the unquoted `*` of `field:*` (the field is set).
    pub fn is_any(&self) -> bool {
        matches!(self, Self::Word { text, .. } if text == "*")
    }
}

/// Why a filter was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterError {
    pub at: Position,
    pub problem: String,
}

impl FilterError {
    pub fn new(at: Position, problem: impl Into<String>) -> Self {
        Self {
            at,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for FilterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at position {}: {}", self.at, self.problem)
    }
}

impl std::error::Error for FilterError {}

impl Filter {
    /// Parses `text`; an empty or blank filter matches everything.
    pub fn parse(text: &str) -> Result<Self, FilterError> {
        let length = text.chars().count();
        if length > MAX_FILTER_CHARS {
            return Err(FilterError::new(
                Position(MAX_FILTER_CHARS + 1),
                format!("a filter is at most {MAX_FILTER_CHARS} characters, this one is {length}"),
            ));
        }
        let tokens = tokenize(text)?;
        let mut parser = Parser {
            tokens,
            next: 0,
            end: Position(length + 1),
            restrictions: 0,
        };
        if parser.peek().is_none() {
            return Ok(Self { root: None });
        }
        let root = parser.expression(0)?;
        if let Some(token) = parser.peek() {
            return Err(FilterError::new(
                token.at,
                format!("unexpected {}", token.kind.describe()),
            ));
        }
        Ok(Self { root: Some(root) })
    }

    /// Every restriction of the filter, in the order written.
    pub fn restrictions(&self) -> Vec<&Restriction> {
        fn walk<'a>(expr: &'a Expr, into: &mut Vec<&'a Restriction>) {
            match expr {
                Expr::And(parts) | Expr::Or(parts) => {
                    parts.iter().for_each(|part| walk(part, into));
                }
                Expr::Not(inner, _) => walk(inner, into),
                Expr::Restriction(restriction) => into.push(restriction),
            }
        }
        let mut all = Vec::new();
        if let Some(root) = &self.root {
            walk(root, &mut all);
        }
        all
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum TokenKind {
    Open,
    Close,
    Comma,
    Comparator(Comparator),
    Word(String),
    Quoted(String),
}

impl TokenKind {
    fn describe(&self) -> String {
        match self {
            Self::Open => "\"(\"".to_owned(),
            Self::Close => "\")\"".to_owned(),
            Self::Comma => "\",\"".to_owned(),
            Self::Comparator(comparator) => format!("\"{}\"", comparator.as_str()),
            Self::Word(word) => format!("\"{word}\""),
            Self::Quoted(text) => format!("the string \"{text}\""),
        }
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        matches!(self, Self::Word(word) if word == keyword)
    }
}

#[derive(Clone, Debug)]
struct Token {
    kind: TokenKind,
    at: Position,
    /// Whether a space separates it from the token before.
    spaced: bool,
}

/// The characters that end a word.
fn ends_word(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '(' | ')' | ',' | '"' | '\'' | '=' | '!' | '<' | '>' | ':'
        )
}

fn tokenize(text: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut index = 0;
    let mut spaced = true;
    while index < chars.len() {
        let c = chars[index];
        let at = Position(index + 1);
        if c.is_whitespace() {
            spaced = true;
            index += 1;
            continue;
        }
        if c.is_control() {
            return Err(FilterError::new(at, "a control character is not allowed"));
        }
        let (kind, width) = match (c, chars.get(index + 1)) {
            ('(', _) => (TokenKind::Open, 1),
            (')', _) => (TokenKind::Close, 1),
            (',', _) => (TokenKind::Comma, 1),
            ('=', _) => (TokenKind::Comparator(Comparator::Equal), 1),
            (':', _) => (TokenKind::Comparator(Comparator::Has), 1),
            ('!', Some('=')) => (TokenKind::Comparator(Comparator::NotEqual), 2),
            ('!', _) => {
                return Err(FilterError::new(
                    at,
                    "\"!\" only in \"!=\"; write NOT for a negation",
                ));
            }
            ('<', Some('=')) => (TokenKind::Comparator(Comparator::LessOrEqual), 2),
            ('<', _) => (TokenKind::Comparator(Comparator::Less), 1),
            ('>', Some('=')) => (TokenKind::Comparator(Comparator::GreaterOrEqual), 2),
            ('>', _) => (TokenKind::Comparator(Comparator::Greater), 1),
            ('"' | '\'', _) => {
                let (unescaped, width) = quoted(&chars[index..], at)?;
                (TokenKind::Quoted(unescaped), width)
            }
            _ => {
                let width = chars[index..]
                    .iter()
                    .take_while(|c| !ends_word(**c) && !c.is_control())
                    .count();
                (
                    TokenKind::Word(chars[index..index + width].iter().collect()),
                    width,
                )
            }
        };
        tokens.push(Token { kind, at, spaced });
        spaced = false;
        index += width;
    }
    Ok(tokens)
}

/// The string starting at `chars[0]` (its quote), unescaped, and how many characters it spans.
fn quoted(chars: &[char], at: Position) -> Result<(String, usize), FilterError> {
    let quote = chars[0];
    let mut text = String::new();
    let mut index = 1;
    while let Some(&c) = chars.get(index) {
        match c {
            '\\' => match chars.get(index + 1) {
                Some(&escaped) if escaped == quote || escaped == '\\' => {
                    text.push(escaped);
                    index += 2;
                }
                _ => {
                    return Err(FilterError::new(
                        Position(at.0 + index),
                        format!("\"\\\" escapes only {quote} and \\ in a string"),
                    ));
                }
            },
            c if c == quote => return Ok((text, index + 1)),
            c if c.is_control() => {
                return Err(FilterError::new(
                    Position(at.0 + index),
                    "a control character is not allowed",
                ));
            }
            c => {
                text.push(c);
                index += 1;
            }
        }
    }
    Err(FilterError::new(at, "this string is never closed"))
}

struct Parser {
    tokens: Vec<Token>,
    next: usize,
    /// The position just past the text, where "expected ..." at the end points.
    end: Position,
    restrictions: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.next)
    }

    fn peek_is_keyword(&self, keyword: &str) -> bool {
        self.peek()
            .is_some_and(|token| token.kind.is_keyword(keyword))
    }

    fn advance(&mut self) -> Option<Token> {
        let token = self.tokens.get(self.next).cloned();
        self.next += 1;
        token
    }

    fn here(&self) -> Position {
        self.peek().map_or(self.end, |token| token.at)
    }

    fn too_deep(&self, depth: usize) -> Result<(), FilterError> {
        if depth > MAX_DEPTH {
            return Err(FilterError::new(
                self.here(),
                format!("parentheses and NOTs nest at most {MAX_DEPTH} deep"),
            ));
        }
        Ok(())
    }

    /// `sequence { AND sequence }`
    fn expression(&mut self, depth: usize) -> Result<Expr, FilterError> {
        self.too_deep(depth)?;
        let mut parts = vec![self.sequence(depth)?];
        while self.peek_is_keyword("AND") {
            self.advance();
            parts.push(self.sequence(depth)?);
        }
        Ok(and(parts))
    }

    /// `factor { factor }`: ends at AND, `)` or the end.
    fn sequence(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut parts = vec![self.factor(depth)?];
        while let Some(token) = self.peek() {
            if token.kind == TokenKind::Close || token.kind.is_keyword("AND") {
                break;
            }
            parts.push(self.factor(depth)?);
        }
        Ok(and(parts))
    }

    /// `term { OR term }`
    fn factor(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let mut parts = vec![self.term(depth)?];
        while self.peek_is_keyword("OR") {
            self.advance();
            parts.push(self.term(depth)?);
        }
        Ok(if parts.len() == 1 {
            parts.remove(0)
        } else {
            Expr::Or(parts)
        })
    }

    /// `NOT term | "-" simple | simple`
    fn term(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let Some(token) = self.peek().cloned() else {
            return Err(FilterError::new(
                self.end,
                "expected a restriction such as status = open",
            ));
        };
        if token.kind.is_keyword("NOT") {
            self.advance();
            self.too_deep(depth + 1)?;
            return Ok(Expr::Not(Box::new(self.term(depth + 1)?), token.at));
        }
        if let TokenKind::Word(word) = &token.kind
            && let Some(rest) = word.strip_prefix('-')
        {
            // "-x" negates x; a lone "-" negates what follows it ("-(a OR b)").
            if rest.is_empty() {
                self.advance();
            } else {
                self.tokens[self.next] = Token {
                    kind: TokenKind::Word(rest.to_owned()),
                    at: Position(token.at.0 + 1),
                    spaced: false,
                };
            }
            self.too_deep(depth + 1)?;
            return Ok(Expr::Not(Box::new(self.simple(depth + 1)?), token.at));
        }
        self.simple(depth)
    }

    /// `"(" expression ")" | restriction`
    fn simple(&mut self, depth: usize) -> Result<Expr, FilterError> {
        let Some(token) = self.peek().cloned() else {
            return Err(FilterError::new(
                self.end,
                "expected a restriction such as status = open",
            ));
        };
        match token.kind {
            TokenKind::Open => {
                self.advance();
                let inner = self.expression(depth + 1)?;
                self.close(token.at)?;
                Ok(inner)
            }
            TokenKind::Word(word) if !is_keyword(&word) => {
                self.advance();
                self.restriction(word, token.at)
            }
            other @ (TokenKind::Word(_)
            | TokenKind::Close
            | TokenKind::Comma
            | TokenKind::Comparator(_)
            | TokenKind::Quoted(_)) => Err(FilterError::new(
                token.at,
                format!(
                    "expected a field name such as status, not {}",
                    other.describe()
                ),
            )),
        }
    }

    fn close(&mut self, opened_at: Position) -> Result<(), FilterError> {
        match self.advance() {
            Some(Token {
                kind: TokenKind::Close,
                ..
            }) => Ok(()),
            _ => Err(FilterError::new(opened_at, "this \"(\" is never closed")),
        }
    }

    fn restriction(&mut self, member: String, member_at: Position) -> Result<Expr, FilterError> {
        let comparator = match self.peek() {
            Some(Token {
                kind: TokenKind::Comparator(comparator),
                ..
            }) => *comparator,
            _ => {
                return Err(FilterError::new(
                    member_at,
                    format!(
                        "\"{member}\" is compared with nothing: write a field, a comparison and a \
                         value, such as status = open"
                    ),
                ));
            }
        };
        self.advance();
        let path: Vec<String> = member.split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(FilterError::new(
                member_at,
                format!("\"{member}\" is not a field name"),
            ));
        }
        self.restrictions += 1;
        if self.restrictions > MAX_RESTRICTIONS {
            return Err(FilterError::new(
                member_at,
                format!("a filter holds at most {MAX_RESTRICTIONS} comparisons"),
            ));
        }
        let argument = self.argument()?;
        Ok(Expr::Restriction(Restriction {
            member: path,
            member_at,
            comparator,
            argument,
        }))
    }

    /// `value | "(" value { [AND | OR] value } ")"`
    fn argument(&mut self) -> Result<Argument, FilterError> {
        let Some(open) = self.peek().cloned() else {
            return Err(FilterError::new(self.end, "expected a value"));
        };
        if open.kind != TokenKind::Open {
            return Ok(Argument::One(self.value()?));
        }
        self.advance();
        let mut values = vec![self.value()?];
        let mut joined_by: Option<(&str, Position)> = None;
        loop {
            let Some(token) = self.peek().cloned() else {
                return Err(FilterError::new(open.at, "this \"(\" is never closed"));
            };
            if token.kind == TokenKind::Close {
                self.advance();
                break;
            }
            let joint = if token.kind.is_keyword("OR") {
                self.advance();
                "OR"
            } else if token.kind.is_keyword("AND") {
                self.advance();
                "AND"
            } else {
                "AND"
            };
            match joined_by {
                Some((first, _)) if first != joint => {
                    return Err(FilterError::new(
                        token.at,
                        "values in parentheses are joined by OR or by AND, not both",
                    ));
                }
                None => joined_by = Some((joint, token.at)),
                Some(_) => {}
            }
            values.push(self.value()?);
        }
        Ok(match joined_by {
            None => Argument::One(values.remove(0)),
            Some(("OR", _)) => Argument::AnyOf(values),
            Some(_) => Argument::AllOf(values),
        })
    }

    /// `word | string | call`
    fn value(&mut self) -> Result<Value, FilterError> {
        let Some(token) = self.advance() else {
            return Err(FilterError::new(self.end, "expected a value"));
        };
        match token.kind {
            TokenKind::Quoted(text) => Ok(Value::Quoted { text, at: token.at }),
            TokenKind::Word(text) if !is_keyword(&text) => {
                let call = self
                    .peek()
                    .is_some_and(|next| next.kind == TokenKind::Open && !next.spaced);
                if !call {
                    return Ok(Value::Word { text, at: token.at });
                }
                let opened_at = self.here();
                self.advance();
                let mut args = Vec::new();
                if self
                    .peek()
                    .is_some_and(|next| next.kind == TokenKind::Close)
                {
                    self.advance();
                } else {
                    loop {
                        args.push(self.value()?);
                        match self.advance() {
                            Some(Token {
                                kind: TokenKind::Comma,
                                ..
                            }) => {}
                            Some(Token {
                                kind: TokenKind::Close,
                                ..
                            }) => break,
                            _ => {
                                return Err(FilterError::new(
                                    opened_at,
                                    "this \"(\" is never closed",
                                ));
                            }
                        }
                    }
                }
                Ok(Value::Call {
                    name: text,
                    args,
                    at: token.at,
                })
            }
            other @ (TokenKind::Word(_)
            | TokenKind::Open
            | TokenKind::Close
            | TokenKind::Comma
            | TokenKind::Comparator(_)) => Err(FilterError::new(
                token.at,
                format!("expected a value, not {}", other.describe()),
            )),
        }
    }
}

fn is_keyword(word: &str) -> bool {
    matches!(word, "AND" | "OR" | "NOT")
}

fn and(mut parts: Vec<Expr>) -> Expr {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        Expr::And(parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(text: &str, at: usize) -> Value {
        Value::Word {
            text: text.to_owned(),
            at: Position(at),
        }
    }

    fn restriction(member: &str, at: usize, comparator: Comparator, argument: Argument) -> Expr {
        Expr::Restriction(Restriction {
            member: member.split('.').map(str::to_owned).collect(),
            member_at: Position(at),
            comparator,
            argument,
        })
    }

    fn refusal(text: &str) -> FilterError {
        Filter::parse(text).expect_err(text)
    }

    #[test]
    fn an_empty_or_blank_filter_matches_everything() {
        assert_eq!(Filter::parse("").unwrap().root, None);
        assert_eq!(Filter::parse("   ").unwrap().root, None);
    }

    #[test]
    fn a_restriction_knows_where_its_field_and_value_were_written() {
        assert_eq!(
            Filter::parse("status = open").unwrap().root,
            Some(restriction(
                "status",
                1,
                Comparator::Equal,
                Argument::One(word("open", 10))
            ))
        );
        assert_eq!(
            Filter::parse("custom_fields.plan!=\"pro plan\"")
                .unwrap()
                .root,
            Some(restriction(
                "custom_fields.plan",
                1,
                Comparator::NotEqual,
                Argument::One(Value::Quoted {
                    text: "pro plan".to_owned(),
                    at: Position(21)
                })
            ))
        );
    }

    #[test]
    fn or_binds_tighter_than_and_and_a_sequence_is_an_and() {
        let parsed = Filter::parse("a = 1 AND b = 2 OR c = 3 d = 4")
            .unwrap()
            .root
            .unwrap();
        let Expr::And(parts) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(parts.len(), 2);
        let Expr::And(sequence) = &parts[1] else {
            panic!("{:?}", parts[1])
        };
        assert!(matches!(&sequence[0], Expr::Or(terms) if terms.len() == 2));
        assert!(matches!(&sequence[1], Expr::Restriction(r) if r.member == ["d"]));
    }

    #[test]
    fn not_and_a_leading_minus_negate() {
        let not = Filter::parse("NOT tags:vip").unwrap().root.unwrap();
        assert!(matches!(not, Expr::Not(_, Position(1))));
        let minus = Filter::parse("-tags:vip").unwrap().root.unwrap();
        let Expr::Not(inner, Position(1)) = minus else {
            panic!("{minus:?}")
        };
        assert_eq!(
            *inner,
            restriction("tags", 2, Comparator::Has, Argument::One(word("vip", 7)))
        );
        assert!(matches!(
            Filter::parse("- (a = 1 OR b = 2)").unwrap().root.unwrap(),
            Expr::Not(inner, _) if matches!(*inner, Expr::Or(_))
        ));
    }

    #[test]
    fn values_in_parentheses_are_any_of_or_all_of() {
        let any = Filter::parse("tags:(refund OR vip)").unwrap().root.unwrap();
        assert_eq!(
            any,
            restriction(
                "tags",
                1,
                Comparator::Has,
                Argument::AnyOf(vec![word("refund", 7), word("vip", 17)])
            )
        );
        let all = Filter::parse("tags:(refund vip)").unwrap().root.unwrap();
        assert!(
            matches!(all, Expr::Restriction(Restriction { argument: Argument::AllOf(values), .. }) if values.len() == 2)
        );
        assert_eq!(
            refusal("tags:(a OR b AND c)"),
            FilterError::new(
                Position(14),
                "values in parentheses are joined by OR or by AND, not both"
            )
        );
    }

    #[test]
    fn a_call_is_a_word_touching_its_parenthesis() {
        let parsed = Filter::parse("create_time < now(-24h)")
            .unwrap()
            .root
            .unwrap();
        assert_eq!(
            parsed,
            restriction(
                "create_time",
                1,
                Comparator::Less,
                Argument::One(Value::Call {
                    name: "now".to_owned(),
                    args: vec![word("-24h", 19)],
                    at: Position(15)
                })
            )
        );
    }

    #[test]
    fn strings_take_either_quote_and_escape_it() {
        let parsed = Filter::parse(r#"subject = 'it\'s "fine"'"#).unwrap();
        assert_eq!(
            parsed.restrictions()[0].argument,
            Argument::One(Value::Quoted {
                text: "it's \"fine\"".to_owned(),
                at: Position(11)
            })
        );
    }

    #[test]
    fn every_refusal_names_its_position() {
        let cases: &[(&str, usize, &str)] = &[
            ("status", 1, "\"status\" is compared with nothing"),
            ("status = open AND", 18, "expected a restriction"),
            ("(status = open", 1, "never closed"),
            ("status = open)", 14, "unexpected \")\""),
            ("status = \"open", 10, "never closed"),
            ("status ! open", 8, "only in \"!=\""),
            ("= open", 1, "expected a field name"),
            ("status = AND", 10, "expected a value"),
            ("status = ", 10, "expected a value"),
            ("a..b = 1", 1, "is not a field name"),
            ("x = now(1", 8, "never closed"),
            ("x = 'a\\b'", 7, "escapes only"),
        ];
        for (text, at, problem) in cases {
            let error = refusal(text);
            assert_eq!(error.at, Position(*at), "{text}: {error}");
            assert!(error.problem.contains(problem), "{text}: {error}");
        }
    }

    #[test]
    fn size_nesting_and_count_are_bounded() {
        let long = format!("a = \"{}\"", "x".repeat(MAX_FILTER_CHARS));
        assert!(refusal(&long).problem.contains("at most 2000 characters"));
        let deep = format!(
            "{}a = 1{}",
            "(".repeat(MAX_DEPTH + 1),
            ")".repeat(MAX_DEPTH + 1)
        );
        assert!(refusal(&deep).problem.contains("nest at most"));
        let nots = format!("{}a = 1", "NOT ".repeat(MAX_DEPTH + 1));
        assert!(refusal(&nots).problem.contains("nest at most"));
        let many = vec!["a = 1"; MAX_RESTRICTIONS + 1].join(" AND ");
        assert!(refusal(&many).problem.contains("at most 50 comparisons"));
        let enough = vec!["a = 1"; MAX_RESTRICTIONS].join(" AND ");
        assert_eq!(Filter::parse(&enough).unwrap().restrictions().len(), 50);
    }

    proptest::proptest! {
        #[test]
        fn no_text_makes_the_parser_panic_and_every_refusal_points_inside_or_just_past_it(
            text in "[ a-z()=!<>:,\"'.*\\-ANDORT0-9]{0,40}"
        ) {
            if let Err(error) = Filter::parse(&text) {
                proptest::prop_assert!(error.at.0 >= 1 && error.at.0 <= text.chars().count() + 1);
            }
        }
    }
}
