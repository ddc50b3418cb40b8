//! Human tables and JSON.

/// Prints rows under a header, columns padded to their widest cell.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    Columns::print(header, rows, &[]);
}

/// A table's column widths, kept for rows printed later (`--watch`).
pub struct Columns {
    widths: Vec<usize>,
}

impl Columns {
    /// Prints the header and rows, each column at least as wide as `min`
    /// says (room for what later rows may hold); later rows line up.
    pub fn print(header: &[&str], rows: &[Vec<String>], min: &[usize]) -> Self {
        let mut widths: Vec<usize> =
            header.iter().enumerate().map(|(i, h)| h.len().max(min.get(i).copied().unwrap_or(0))).collect();
        for r in rows {
            for (w, c) in widths.iter_mut().zip(r) {
                *w = (*w).max(c.len());
            }
        }
        let c = Self { widths };
        c.line(&header.iter().map(|h| h.to_string()).collect::<Vec<_>>());
        for r in rows {
            c.line(r);
        }
        c
    }

    /// One row, padded as the table was (a longer cell pushes the rest).
    pub fn line(&self, cells: &[String]) {
        let s: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = self.widths.get(i).copied().unwrap_or(0)))
            .collect();
        println!("{}", s.join("  ").trim_end());
    }
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

/// A digest or id shortened to 12 characters, as Docker shows them.
pub fn short(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// How long ago Unix second `unix` was ("-" when unset).
pub fn age(unix: i64) -> String {
    if unix <= 0 {
        return "-".into();
    }
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    since((now - unix).max(0) as u64)
}

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// How long ago Unix millisecond `ms` was.
pub fn ago(ms: i64) -> String {
    since(((now_ms() - ms).max(0) / 1000) as u64)
}

/// `s` seconds as "12s ago", "3m ago", "2h ago", "5d ago".
fn since(s: u64) -> String {
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        3600..=86399 => format!("{}h ago", s / 3600),
        _ => format!("{}d ago", s / 86400),
    }
}
