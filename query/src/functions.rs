//! Hunting functions every session has (docs/sql.md):
//!
//! - `cidr_match(ip, cidr)`: whether an IPv4 or IPv6 address text lies in a
//!   CIDR block (`10.0.0.0/8`, `2001:db8::/32`, or a bare address for one
//!   host). An address that does not parse gives NULL (data is messy); a
//!   block that does not parse is refused, naming it.
//! - `wildcard_match(value, pattern)`: Sigma's matching of a value against
//!   a pattern: case-insensitive, `*` any run of characters, `?` one
//!   character, `\` escapes the next one (`\*` a literal star), the whole
//!   value must match.
//!
//! - `first_seen(ts)` / `last_seen(ts)`: the earliest and latest value of a
//!   timestamp in a group (aliases of `min`/`max`, named as hunters say it).
//! - JSON access into `unmapped` and `raw`: `json_get_str(unmapped,
//!   'key', …)`, `json_get_int`, `json_contains`, `unmapped->>'key'` and
//!   the rest of datafusion-functions-json.
//!
//! `cidr_match` and `wildcard_match` take text arguments (other types are
//! cast to text first) and return NULL when an argument is NULL.

use std::net::IpAddr;

pub use spoor_common::matching::{Cidr, wildcard_regex};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, Result, ScalarValue};
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

/// Registers the hunting functions on a session.
pub fn register(ctx: &mut SessionContext) -> Result<()> {
    ctx.register_udf(ScalarUDF::from(UtcDateTrunc::new()));
    ctx.register_udf(ScalarUDF::from(CidrMatch::new()));
    ctx.register_udf(ScalarUDF::from(WildcardMatch::new()));
    for (alias, udaf) in [
        (
            "first_seen",
            datafusion::functions_aggregate::min_max::min_udaf(),
        ),
        (
            "last_seen",
            datafusion::functions_aggregate::min_max::max_udaf(),
        ),
    ] {
        ctx.register_udaf(udaf.as_ref().clone().with_aliases([alias]));
    }
    datafusion_functions_json::register_all(ctx)
}

/// DataFusion's `date_trunc`, with hours and days of UTC timestamps taken
/// the fast way. DataFusion truncates a timestamp with a time zone value by
/// value through chrono-tz (half the time of an hourly histogram over the
/// lake went there), but only takes its arithmetic fast path for
/// timestamps without one. Every `time` in the lake is UTC, where an hour
/// and a day are fixed lengths: the values are truncated as zone-less
/// timestamps (the same numbers) and tagged UTC again. Everything else goes
/// to DataFusion's function unchanged.
#[derive(Debug, PartialEq, Eq, Hash)]
struct UtcDateTrunc {
    inner: Arc<ScalarUDF>,
}

impl UtcDateTrunc {
    fn new() -> Self {
        UtcDateTrunc {
            inner: datafusion::functions::datetime::date_trunc(),
        }
    }
}

fn is_utc(tz: &str) -> bool {
    matches!(tz, "UTC" | "utc" | "+00:00" | "Z" | "+00" | "Etc/UTC")
}

/// `granularity` is one of the units a zone-less truncation handles as UTC.
fn fixed_length_unit(granularity: &ColumnarValue) -> bool {
    match granularity {
        ColumnarValue::Scalar(value) => scalar_text(value)
            .is_some_and(|t| t.eq_ignore_ascii_case("hour") || t.eq_ignore_ascii_case("day")),
        ColumnarValue::Array(_) => false,
    }
}

impl ScalarUDFImpl for UtcDateTrunc {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        self.inner.return_type(args)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn output_ordering(
        &self,
        inputs: &[datafusion::logical_expr::sort_properties::ExprProperties],
    ) -> Result<datafusion::logical_expr::sort_properties::SortProperties> {
        self.inner.output_ordering(inputs)
    }

    fn documentation(&self) -> Option<&datafusion::logical_expr::Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, mut args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        use arrow::array::{AsArray, TimestampMicrosecondArray};
        use arrow::datatypes::{TimeUnit, TimestampMicrosecondType};
        let utc = match (args.args.first(), args.args.get(1)) {
            (Some(granularity), Some(ColumnarValue::Array(values)))
                if fixed_length_unit(granularity) =>
            {
                match values.data_type() {
                    DataType::Timestamp(TimeUnit::Microsecond, Some(tz)) if is_utc(tz) => Some((
                        tz.clone(),
                        values.as_primitive::<TimestampMicrosecondType>().clone(),
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        let Some((tz, values)) = utc else {
            return self.inner.invoke_with_args(args);
        };
        let naive = values.with_timezone_opt(None::<Arc<str>>);
        let naive_type = naive.data_type().clone();
        args.args[1] = ColumnarValue::Array(Arc::new(naive));
        if let Some(field) = args.arg_fields.get_mut(1) {
            *field = Arc::new(field.as_ref().clone().with_data_type(naive_type.clone()));
        }
        args.return_field = Arc::new(
            args.return_field
                .as_ref()
                .clone()
                .with_data_type(naive_type),
        );
        match self.inner.invoke_with_args(args)? {
            ColumnarValue::Array(out) => {
                let out = out
                    .as_any()
                    .downcast_ref::<TimestampMicrosecondArray>()
                    .cloned()
                    .ok_or_else(|| {
                        DataFusionError::Internal("date_trunc: unexpected result type".into())
                    })?;
                Ok(ColumnarValue::Array(Arc::new(out.with_timezone(tz))))
            }
            ColumnarValue::Scalar(_) => Err(DataFusionError::Internal(
                "date_trunc: a scalar result for an array".into(),
            )),
        }
    }
}

/// The arguments as text arrays of the batch's length.
pub(crate) fn text_args<const N: usize>(
    name: &str,
    args: ScalarFunctionArgs,
) -> Result<[StringArray; N]> {
    let rows = args.number_rows;
    let arrays: Vec<StringArray> = args
        .args
        .into_iter()
        .map(|a| -> Result<StringArray> {
            let array: ArrayRef = a.to_array(rows)?;
            let text = arrow::compute::cast(&array, &DataType::Utf8)?;
            text.as_any()
                .downcast_ref::<StringArray>()
                .cloned()
                .ok_or_else(|| DataFusionError::Internal(format!("{name}: argument is not text")))
        })
        .collect::<Result<_>>()?;
    arrays.try_into().map_err(|v: Vec<StringArray>| {
        DataFusionError::Plan(format!("{name} takes {N} arguments, got {}", v.len()))
    })
}

/// The text of a string scalar, whatever its string type.
pub(crate) fn scalar_text(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// The text of argument `i` when the query gives it as a literal.
pub(crate) fn literal_text(args: &ReturnFieldArgs, i: usize) -> Option<String> {
    scalar_text(args.scalar_arguments.get(i).copied().flatten()?).map(str::to_string)
}

/// The boolean result field: nullable (NULL arguments, and addresses that
/// do not parse, give NULL).
pub(crate) fn boolean_field(name: &str) -> FieldRef {
    Arc::new(Field::new(name, DataType::Boolean, true))
}

/// A refusal of the caller's argument: reported as invalid SQL.
fn bad_argument(message: String) -> DataFusionError {
    DataFusionError::Plan(message)
}

fn parse_block(text: &str) -> Result<Cidr> {
    Cidr::parse(text).ok_or_else(|| {
        bad_argument(format!(
            "cidr_match: {text:?} is not a CIDR block (like '10.0.0.0/8' or '2001:db8::/32')"
        ))
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct CidrMatch {
    signature: Signature,
}

impl CidrMatch {
    fn new() -> Self {
        CidrMatch {
            signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CidrMatch {
    fn name(&self) -> &str {
        "cidr_match"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    /// Checks a literal block while planning, so a typo is refused before
    /// any file is read.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(text) = literal_text(&args, 1) {
            parse_block(&text)?;
        }
        Ok(boolean_field(self.name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [ips, blocks] = text_args::<2>("cidr_match", args)?;
        // The block is nearly always one literal: parse each distinct text once.
        let mut last: Option<(String, Cidr)> = None;
        let mut out = Vec::with_capacity(ips.len());
        for i in 0..ips.len() {
            if ips.is_null(i) || blocks.is_null(i) {
                out.push(None);
                continue;
            }
            let text = blocks.value(i);
            let cidr = match &last {
                Some((t, c)) if t == text => *c,
                _ => {
                    let c = parse_block(text)?;
                    last = Some((text.to_string(), c));
                    c
                }
            };
            out.push(
                ips.value(i)
                    .trim()
                    .parse::<IpAddr>()
                    .ok()
                    .map(|ip| cidr.contains(ip)),
            );
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

#[derive(Debug)]
struct WildcardMatch {
    signature: Signature,
    /// The last pattern compiled (patterns are nearly always literals).
    compiled: Mutex<Option<(String, regex::Regex)>>,
}

impl PartialEq for WildcardMatch {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature
    }
}

impl Eq for WildcardMatch {}

impl std::hash::Hash for WildcardMatch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
    }
}

impl WildcardMatch {
    fn new() -> Self {
        WildcardMatch {
            signature: Signature::uniform(2, vec![DataType::Utf8], Volatility::Immutable),
            compiled: Mutex::new(None),
        }
    }

    fn regex_for(&self, pattern: &str) -> Result<regex::Regex> {
        let mut compiled = self.compiled.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((p, re)) = compiled.as_ref()
            && p == pattern
        {
            return Ok(re.clone());
        }
        let re = regex::RegexBuilder::new(&wildcard_regex(pattern))
            .case_insensitive(true)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| bad_argument(format!("wildcard_match: pattern {pattern:?}: {e}")))?;
        *compiled = Some((pattern.to_string(), re.clone()));
        Ok(re)
    }
}

impl ScalarUDFImpl for WildcardMatch {
    fn name(&self) -> &str {
        "wildcard_match"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    /// Compiles a literal pattern while planning (refusing one too large).
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if let Some(pattern) = literal_text(&args, 1) {
            self.regex_for(&pattern)?;
        }
        Ok(boolean_field(self.name()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [values, patterns] = text_args::<2>("wildcard_match", args)?;
        let mut current: Option<(String, regex::Regex)> = None;
        let mut out = Vec::with_capacity(values.len());
        for i in 0..values.len() {
            if values.is_null(i) || patterns.is_null(i) {
                out.push(None);
                continue;
            }
            let pattern = patterns.value(i);
            if current.as_ref().is_none_or(|(p, _)| p != pattern) {
                current = Some((pattern.to_string(), self.regex_for(pattern)?));
            }
            out.push(current.as_ref().map(|(_, re)| re.is_match(values.value(i))));
        }
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(out))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    /// The query's result, pretty-printed.
    async fn shown(ctx: &SessionContext, sql: &str) -> String {
        let batches = ctx
            .sql(sql)
            .await
            .expect("plan")
            .collect()
            .await
            .expect("run");
        arrow::util::pretty::pretty_format_batches(&batches)
            .expect("format")
            .to_string()
    }

    #[tokio::test]
    async fn date_trunc_of_utc_hours_and_days_matches_datafusion() {
        let mut ctx = SessionContext::new();
        register(&mut ctx).expect("register");
        let plain = SessionContext::new();
        // Arrays (VALUES) take the fast path; times before 1970 and on
        // boundaries included; other units and another zone are delegated.
        let utc = |t: &str| format!("(arrow_cast('{t}', 'Timestamp(Microsecond, Some(\"UTC\"))'))");
        let values = [
            "2024-03-05T07:59:59.999999",
            "1969-12-31T23:30:00",
            "2024-03-05T08:00:00",
        ]
        .map(utc)
        .join(", ");
        for unit in ["hour", "day", "month", "minute"] {
            let sql = format!(
                "SELECT CAST(date_trunc('{unit}', t) AS VARCHAR) AS a, arrow_typeof(date_trunc('{unit}', t)) AS ty \
                 FROM (VALUES {values}) AS v(t)"
            );
            let ours = shown(&ctx, &sql).await;
            let theirs = shown(&plain, &sql).await;
            assert_eq!(ours, theirs, "{unit}");
            if unit == "hour" {
                assert!(ours.contains("2024-03-05T07:00:00Z"), "{}", ours);
                assert!(ours.contains("1969-12-31T23:00:00Z"), "{}", ours);
            }
        }
        let zoned = "SELECT CAST(date_trunc('day', t) AS VARCHAR) AS a FROM (VALUES \
            (arrow_cast('2024-03-05T20:00:00', 'Timestamp(Microsecond, Some(\"+05:30\"))'))) AS v(t)";
        assert_eq!(shown(&ctx, zoned).await, shown(&plain, zoned).await);
    }

    #[test]
    fn cidr_blocks_contain_their_addresses_only() {
        let net = Cidr::parse("10.1.0.0/16").expect("cidr");
        assert!(net.contains(ip("10.1.255.7")));
        assert!(!net.contains(ip("10.2.0.1")));
        assert!(net.contains(ip("::ffff:10.1.2.3")), "IPv4-mapped IPv6");
        assert!(!net.contains(ip("2001:db8::1")), "other family");
        let all = Cidr::parse("0.0.0.0/0").expect("cidr");
        assert!(all.contains(ip("203.0.113.9")));
        let host = Cidr::parse("192.0.2.1").expect("bare address");
        assert!(host.contains(ip("192.0.2.1")) && !host.contains(ip("192.0.2.2")));
        let v6 = Cidr::parse("2001:db8::/32").expect("cidr");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "x/8",
            "::/129",
            "10.0.0.0/-1",
            "",
        ] {
            assert_eq!(Cidr::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn wildcards_follow_sigma() {
        let matches = |value: &str, pattern: &str| {
            regex::RegexBuilder::new(&wildcard_regex(pattern))
                .case_insensitive(true)
                .build()
                .expect("regex")
                .is_match(value)
        };
        assert!(matches(r"C:\Windows\System32\cmd.exe", r"*\\cmd.exe"));
        assert!(matches("POWERSHELL -ENC abc", "powershell -enc *"));
        assert!(!matches("xpowershell", "powershell*"), "anchored");
        assert!(matches("a1c", "a?c") && !matches("a12c", "a?c"));
        assert!(matches("a*c", r"a\*c") && !matches("abc", r"a\*c"));
        assert!(matches("line1\nline2", "line1*"), "`*` spans newlines");
        assert!(matches("(x)+[y]", "(x)+[y]"), "regex syntax is literal");
    }

    proptest::proptest! {
        #[test]
        fn any_pattern_compiles(pattern in ".{0,40}") {
            proptest::prop_assert!(regex::Regex::new(&wildcard_regex(&pattern)).is_ok());
        }

        #[test]
        fn cidr_parse_never_panics(text in ".{0,40}") {
            let _ = Cidr::parse(&text);
        }
    }
}
