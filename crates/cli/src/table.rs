//! A minimal left-aligned text table for the `cluster` and `ready` commands.

/// Renders `rows` (the first is the header) with columns padded to the widest
/// cell and separated by two spaces; trailing spaces are trimmed.
///
/// The last cell of a short row (e.g. "unreachable: ...") spills over the
/// remaining columns and does not widen the column it starts in.
pub fn render(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if row.len() < cols && i + 1 == row.len() {
                continue;
            }
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            line.push_str(cell);
            if i + 1 < row.len() {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_aligned() {
        let rows = vec![
            vec!["ID".to_string(), "ROLE".to_string(), "X".to_string()],
            vec!["10".to_string(), "leader".to_string(), "y".to_string()],
        ];
        assert_eq!(render(&rows), "ID  ROLE    X\n10  leader  y\n");
    }

    #[test]
    fn a_short_rows_last_cell_spills_over() {
        let rows = vec![
            vec!["NODE".to_string(), "ID".to_string(), "ROLE".to_string()],
            vec!["n1".to_string(), "1".to_string(), "leader".to_string()],
            vec!["n2".to_string(), "unreachable: refused".to_string()],
        ];
        assert_eq!(
            render(&rows),
            "NODE  ID  ROLE\nn1    1   leader\nn2    unreachable: refused\n"
        );
    }
}
