//! Where a process's CPU went, by part of the stack: reads the text of `perf report --stdio
//! --sort dso,sym` (self time per symbol, as `perf record -e cpu-clock` samples it on machines
//! without hardware counters) and adds the symbols up by what they belong to: the kernel's
//! sockets and wake-ups, copying, the allocator, HTTP/2, tonic's plumbing, the runtime, the Redis
//! and PostgreSQL clients, protobuf, and the service's own code. `bench/run --profile` prints one
//! such summary per service scenario, so that a ratio below its target comes with what bounds it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// One line of the report: a symbol's share of the samples.
#[derive(Clone, Debug, PartialEq)]
pub struct SymbolShare {
    pub percent: f64,
    pub dso: String,
    pub symbol: String,
}

/// The symbol lines of `perf report --stdio --sort dso,sym` (`  3.99%  libc.so.6  [.] memmove`);
/// headers, blank lines and anything else are skipped.
pub fn parse_report(text: &str) -> Vec<SymbolShare> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim_start();
            let (percent, rest) = line.split_once('%')?;
            let percent: f64 = percent.trim().parse().ok()?;
            let rest = rest.trim_start();
            let (dso, symbol) = rest
                .split_once(" [.] ")
                .or_else(|| rest.split_once(" [k] "))?;
            Some(SymbolShare {
                percent,
                dso: dso.trim().to_owned(),
                symbol: symbol.trim().to_owned(),
            })
        })
        .collect()
}

/// The parts of the stack a symbol can belong to, in the order they are printed.
pub const CATEGORIES: [&str; 14] = [
    "kernel (sockets, wake-ups, scheduling)",
    "copying (memmove, memcpy, memset)",
    "allocator (mimalloc)",
    "HTTP/2 (h2, hyper)",
    "gRPC plumbing (tonic, tower, http)",
    "async runtime (tokio)",
    "Redis client (redis)",
    "PostgreSQL client (diesel, tokio-postgres)",
    "protobuf and buffers (prost, bytes, generated code)",
    "tracing",
    "supportdesk's own code",
    "Rust std (collections, strings, formatting)",
    "other crates (uuid, chrono, crypto, serde)",
    "other (libc, vdso, unresolved)",
];

/// Which of [`CATEGORIES`] a symbol belongs to.
pub fn category(dso: &str, symbol: &str) -> &'static str {
    if dso.starts_with("[kernel") {
        return CATEGORIES[0];
    }
    let bare = symbol.trim_start_matches('_');
    if ["memmove", "memcpy", "memset", "memcmp"]
        .iter()
        .any(|name| bare.starts_with(name))
    {
        return CATEGORIES[1];
    }
    if bare.starts_with("mi_") || symbol.starts_with("_mi_") {
        return CATEGORIES[2];
    }
    let krate = owning_crate(symbol);
    let path = owning_path(symbol);
    match krate {
        "h2" | "hyper" | "hyper_util" => CATEGORIES[3],
        "tonic" | "tonic_types" | "tower" | "tower_http" | "tower_layer" | "tower_service"
        | "http" | "http_body" | "http_body_util" => CATEGORIES[4],
        "tokio" | "tokio_util" | "mio" | "futures_util" | "futures_core" | "futures_channel"
        | "parking_lot" | "parking_lot_core" => CATEGORIES[5],
        "redis" | "combine" => CATEGORIES[6],
        "diesel" | "diesel_async" | "tokio_postgres" | "postgres_protocol" | "postgres_types"
        | "bb8" => CATEGORIES[7],
        "prost" | "bytes" | "tonic_prost" => CATEGORIES[8],
        "supportdesk" if path.starts_with("supportdesk::wire::proto") => CATEGORIES[8],
        "tracing" | "tracing_core" | "tracing_subscriber" | "sharded_slab" => CATEGORIES[9],
        "supportdesk" => CATEGORIES[10],
        "core" | "alloc" | "std" | "hashbrown" | "itoa" | "memchr" => CATEGORIES[11],
        "" => CATEGORIES[13],
        _ if symbol.contains("::") => CATEGORIES[12],
        _ => CATEGORIES[13],
    }
}

/// The path a symbol is charged to: the type of a trait impl (`<A as B>::f` is A's), the type
/// dropped by `drop_in_place<T>`, else the symbol's own path.
fn owning_path(symbol: &str) -> &str {
    let mut path = symbol;
    loop {
        if let Some(inner) = path.strip_prefix('<') {
            path = inner;
            continue;
        }
        if let Some(inner) = path.strip_prefix("core::ptr::drop_in_place<") {
            path = inner;
            continue;
        }
        if let Some(inner) = path
            .strip_prefix("&mut ")
            .or_else(|| path.strip_prefix('&'))
        {
            path = inner;
            continue;
        }
        return path;
    }
}

/// The crate of [`owning_path`]: what comes before its first `::` (empty for a plain C name).
fn owning_crate(symbol: &str) -> &str {
    owning_path(symbol)
        .split_once("::")
        .map_or("", |(krate, _)| krate)
}

/// The report's shares added up by [`category`], as percentages of all its samples (the lines
/// a report leaves out below its percent limit are in none).
pub fn by_category(shares: &[SymbolShare]) -> BTreeMap<&'static str, f64> {
    let mut totals = BTreeMap::new();
    for share in shares {
        *totals
            .entry(category(&share.dso, &share.symbol))
            .or_insert(0.0) += share.percent;
    }
    totals
}

/// A markdown summary: the categories with their share and, given the process's CPU µs per call,
/// their µs per call; then the `top` heaviest symbols.
pub fn summary(shares: &[SymbolShare], cpu_us_per_call: Option<f64>, top: usize) -> String {
    let totals = by_category(shares);
    let mut out =
        String::from("| part of the stack | share of the CPU | µs per call |\n|---|---:|---:|\n");
    for name in CATEGORIES {
        let Some(&percent) = totals.get(name).filter(|&&percent| percent >= 0.05) else {
            continue;
        };
        let micros = cpu_us_per_call.map_or_else(
            || "–".to_owned(),
            |cpu| format!("{:.1}", cpu * percent / 100.0),
        );
        let _ = writeln!(out, "| {name} | {percent:.1} % | {micros} |");
    }
    let mut heaviest: Vec<&SymbolShare> = shares.iter().collect();
    heaviest.sort_by(|a, b| b.percent.total_cmp(&a.percent));
    out.push_str("\nHeaviest symbols (self time):\n\n");
    for share in heaviest.into_iter().take(top) {
        let mut symbol = share.symbol.clone();
        if symbol.len() > 140 {
            let mut end = 140;
            while !symbol.is_char_boundary(end) {
                end -= 1;
            }
            symbol.truncate(end);
            symbol.push('…');
        }
        let _ = writeln!(out, "- {:.2} % `{}` ({})", share.percent, symbol, share.dso);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = "\
# Samples: 8K of event 'cpu-clock'
#
# Overhead  Shared Object      Symbol
# ........  .................  ......
#
     8.50%  libc.so.6          [.] __memmove_avx512_unaligned_erms
     7.90%  [kernel.kallsyms]  [k] _raw_spin_unlock_irqrestore
     3.20%  supportdesk        [.] _mi_page_malloc_zero
     2.90%  supportdesk        [.] h2::hpack::huffman::decode::decode
     0.80%  supportdesk        [.] <supportdesk::middleware::admission::Admit<S> as tower_service::Service<http::request::Request<tonic::body::Body>>>::call::{{closure}}
     0.40%  supportdesk        [.] <supportdesk::wire::proto::supportdesk::v1::Ticket as prost::Message>::encode_raw
     0.30%  supportdesk        [.] core::ptr::drop_in_place<redis::types::Value>
     0.20%  supportdesk        [.] 0x0000000000595bce
";

    #[test]
    fn every_symbol_line_of_a_report_is_read_and_headers_are_not() {
        let shares = parse_report(REPORT);
        assert_eq!(shares.len(), 8);
        assert_eq!(
            shares[0],
            SymbolShare {
                percent: 8.5,
                dso: "libc.so.6".to_owned(),
                symbol: "__memmove_avx512_unaligned_erms".to_owned(),
            }
        );
        assert_eq!(shares[1].dso, "[kernel.kallsyms]");
    }

    #[test]
    fn symbols_are_charged_to_the_part_of_the_stack_they_belong_to() {
        let charged: Vec<&str> = parse_report(REPORT)
            .iter()
            .map(|share| category(&share.dso, &share.symbol))
            .collect();
        assert_eq!(
            charged,
            [
                CATEGORIES[1],  // memmove
                CATEGORIES[0],  // kernel
                CATEGORIES[2],  // mimalloc
                CATEGORIES[3],  // h2
                CATEGORIES[10], // an impl on the service's own type is the service's
                CATEGORIES[8],  // generated protobuf code
                CATEGORIES[6],  // dropping a redis value is the Redis client's
                CATEGORIES[13], // unresolved
            ]
        );
    }

    #[test]
    fn the_summary_adds_up_each_part_and_turns_shares_into_microseconds_per_call() {
        let summary = summary(&parse_report(REPORT), Some(40.0), 2);
        assert!(
            summary.contains("| kernel (sockets, wake-ups, scheduling) | 7.9 % | 3.2 |"),
            "{summary}"
        );
        assert!(
            summary.contains("| copying (memmove, memcpy, memset) | 8.5 % | 3.4 |"),
            "{summary}"
        );
        assert!(summary.contains("- 8.50 % `__memmove_avx512_unaligned_erms` (libc.so.6)"));
        assert!(
            !summary.contains("_mi_page_malloc_zero`"),
            "only the top 2: {summary}"
        );
    }
}
