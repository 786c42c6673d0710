//! Plain text tables, as flyctl prints them: a header row, columns left-aligned and as
//! wide as their widest cell, two spaces apart.

use serde_json::Value;

/// Column gap.
const GAP: &str = "  ";

/// Renders `header` and `rows`; every row has as many cells as the header.
pub fn render(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join(GAP).trim_end())
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// The text of a JSON field (strings bare, others as JSON, absent as empty).
pub fn text(value: &Value, field: &str) -> String {
    match &value[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// The machines table of `status` and `machine list`: ID, NAME, REGION, STATE, CREATED.
pub fn machines(machines: &[Value]) -> String {
    let rows: Vec<Vec<String>> = machines
        .iter()
        .map(|m| {
            ["id", "name", "region", "state", "created_at"]
                .iter()
                .map(|f| text(m, f))
                .collect()
        })
        .collect();
    render(&["ID", "NAME", "REGION", "STATE", "CREATED"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Columns line up under their headers, two spaces apart, no trailing blanks.
    #[test]
    fn columns_align() {
        let rows = vec![
            vec!["a".to_string(), "long value".to_string()],
            vec!["bbbb".to_string(), "x".to_string()],
        ];
        let out = render(&["ID", "NAME"], &rows);
        assert_eq!(out, "ID    NAME\na     long value\nbbbb  x\n");
    }
}
