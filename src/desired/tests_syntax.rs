//! Tests for the positional JSON parser, through the desired-state reader: every
//! syntax error with its position, and the details that must parse.

use super::json::{self, Value};
use super::tests::check;

#[test]
fn syntax_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "/srv/d.json:1:1: invalid JSON: the file is empty: it must hold one JSON object"),
        (" \n ", "/srv/d.json:2:2: invalid JSON: the file is empty: it must hold one JSON object"),
        (
            "{\"guests\": [],}",
            "/srv/d.json:1:15: invalid JSON: expected a key, found '}': remove the trailing comma, JSON does not allow one",
        ),
        (
            "{\"guests\": [{\"vmid\": 101},]}",
            "/srv/d.json:1:27: invalid JSON: expected a value, found ']': remove the trailing comma, JSON does not allow one",
        ),
        (
            "{\"version\": 1\n \"guests\": []}",
            "/srv/d.json:2:2: invalid JSON: expected ',' or '}' after an object member, found '\"': a comma is probably missing",
        ),
        (
            "{\"guests\": [1 2]}",
            "/srv/d.json:1:15: invalid JSON: expected ',' or ']' after an array element, found '2': a comma is probably missing",
        ),
        (
            "{\"guests\": [1",
            "/srv/d.json:1:14: invalid JSON: expected ',' or ']' after an array element, found end of file",
        ),
        (
            "{\"guests\": []} // managed by ansible",
            "/srv/d.json:1:16: invalid JSON: comments are not allowed in JSON: remove them",
        ),
        (
            "{\"guests\": []} x",
            "/srv/d.json:1:16: invalid JSON: unexpected 'x' after the end of the JSON value",
        ),
        (
            "{'guests': []}",
            "/srv/d.json:1:2: invalid JSON: expected a key in double quotes, found '\\''",
        ),
        (
            "{\"guests\": ['a']}",
            "/srv/d.json:1:13: invalid JSON: strings must use double quotes (\"), not single quotes",
        ),
        (
            "{\"guests\" []}",
            "/srv/d.json:1:11: invalid JSON: expected ':' after the key \"guests\", found '['",
        ),
        (
            "{\"guests\": [], \"x\": \"abc}",
            "/srv/d.json:1:21: invalid JSON: this string is never closed: add the closing '\"'",
        ),
        (
            "{\"guests\": [], \"x\": \"a\nb\"}",
            "/srv/d.json:1:23: invalid JSON: control character in a string: a line break inside a string must be written as \\n",
        ),
        (
            "{\"guests\": [], \"x\": \"a\tb\"}",
            "/srv/d.json:1:23: invalid JSON: control character in a string: write control characters as escapes such as \\t or \\u0001",
        ),
        (
            r#"{"guests": [], "x": "a\qb"}"#,
            r#"/srv/d.json:1:23: invalid JSON: invalid escape '\q': use \", \\, \/, \b, \f, \n, \r, \t or \uXXXX"#,
        ),
        (
            r#"{"guests": [], "x": "\ud83d"}"#,
            r#"/srv/d.json:1:22: invalid JSON: invalid \u escape: \uD83D is half of a surrogate pair"#,
        ),
        (
            r#"{"guests": [], "x": "\ude00\ud83d"}"#,
            r#"/srv/d.json:1:22: invalid JSON: invalid \u escape: \uDE00 is half of a surrogate pair"#,
        ),
        (
            r#"{"guests": [], "x": "\u12g4"}"#,
            r#"/srv/d.json:1:22: invalid JSON: invalid \u escape: expected four hex digits"#,
        ),
        (
            r#"{"guests": [012]}"#,
            "/srv/d.json:1:13: invalid JSON: invalid number: leading zeros are not allowed",
        ),
        (
            r#"{"guests": [-]}"#,
            "/srv/d.json:1:13: invalid JSON: invalid number: expected a digit after '-'",
        ),
        (
            r#"{"guests": [1.]}"#,
            "/srv/d.json:1:13: invalid JSON: invalid number: expected a digit after '.'",
        ),
        (
            r#"{"guests": [1e+]}"#,
            "/srv/d.json:1:13: invalid JSON: invalid number: expected a digit in the exponent",
        ),
        (
            r#"{"guests": [True]}"#,
            "/srv/d.json:1:13: invalid JSON: expected a value, found 'T'",
        ),
        (
            r#"{"guests": [nul]}"#,
            "/srv/d.json:1:13: invalid JSON: expected a value, found 'n'",
        ),
        (
            r#"{"guests": }"#,
            "/srv/d.json:1:12: invalid JSON: expected a value, found '}'",
        ),
    ];
    for (input, expected) in cases {
        check(input, expected);
    }
}

#[test]
fn json_details_that_parse() {
    // Escapes, surrogate pairs, a byte order mark, exponents and all whitespace kinds.
    check(
        "\u{feff}{\"guests\":\r\n\t[{\"vmid\": 101, \"description\": \"a\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}]}",
        "101 description=\"a\\\"\\\\/\\u{8}\\u{c}\\n\\r\\té😀\"",
    );
    let node = json::parse("[1e3, -0.5, 0, null, true, false, {}, []]").unwrap();
    let Value::Array(items) = &node.value else {
        panic!("not an array")
    };
    let described: Vec<String> = items.iter().map(|n| n.describe()).collect();
    assert_eq!(
        described.join(" "),
        "1e3 -0.5 0 null true false an object an array"
    );
    assert_eq!(items[2].as_u64(), Some(0));
    assert_eq!(items[0].as_u64(), None);
    assert_eq!(json::parse("18446744073709551616").unwrap().as_u64(), None);
    let huge = json::parse(&"9".repeat(100)).unwrap();
    assert_eq!(huge.describe(), format!("{}...", "9".repeat(40)));
    let long = "x".repeat(50);
    assert_eq!(json::quote(&long), format!("\"{}\"...", "x".repeat(40)));
}

#[test]
fn nesting_is_bounded() {
    let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
    check(
        &deep,
        "/srv/d.json:1:65: invalid JSON: nested deeper than 64 levels",
    );
}
