//! The agencies file: every issuing agency and its published collection details in one CSV
//! file, loaded by the platform administrator (admin page or `ekey admin agencies`).
//!
//! The file has the header `province,name_zh,name_en,address,window,hours,hotline` and one
//! row per agency, UTF-8 (a byte-order mark, as spreadsheet programs write it, is
//! accepted), fields separated by commas and quoted with `"` when they hold one. It must
//! name each of the 31 provincial agencies; it may add the agencies of the separately
//! planned cities (计划单列市) and of the Xinjiang Production and Construction Corps
//! ([`EXTRA_AGENCIES`]). A detail not yet published stays empty, and pages say so. The
//! whole file is checked before anything is kept: one bad line and nothing changes.

use std::collections::BTreeSet;

use crate::Lang;
use crate::province;

/// Agencies beside the 31 provincial ones that the administrator may add: the five
/// separately planned cities, which have their own commerce bureaus, and the Xinjiang
/// Production and Construction Corps. `(code, Chinese name of the area, English name)`.
pub const EXTRA_AGENCIES: [(&str, &str, &str); 6] = [
    ("210200", "大连市", "Dalian"),
    ("330200", "宁波市", "Ningbo"),
    ("350200", "厦门市", "Xiamen"),
    ("370200", "青岛市", "Qingdao"),
    ("440300", "深圳市", "Shenzhen"),
    (
        "660000",
        "新疆生产建设兵团",
        "Xinjiang Production and Construction Corps",
    ),
];

/// The header line the file must start with.
pub const HEADER: &str = "province,name_zh,name_en,address,window,hours,hotline";

/// Longest file accepted, in bytes.
pub const MAX_BYTES: usize = 256 * 1024;

/// One agency as the file gives it (trimmed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgencyRow {
    /// Area code (GB/T 2260): a province, a separately planned city or the Corps.
    pub province: String,
    /// Name, Chinese.
    pub name_zh: String,
    /// Name, English.
    pub name_en: String,
    /// Collection address; empty when not yet published.
    pub address: String,
    /// Collection window; empty when not yet published.
    pub window: String,
    /// Opening hours; empty when not yet published.
    pub hours: String,
    /// Hotline; empty when not yet published.
    pub hotline: String,
}

/// One thing wrong with the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong, Chinese.
    pub zh: String,
    /// What is wrong, English.
    pub en: String,
}

/// The agencies file was refused; nothing was loaded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("agencies file refused: {} problem(s)", problems.len())]
pub struct AgencyFileError {
    /// Every problem found (at most [`MAX_PROBLEMS`]).
    pub problems: Vec<Problem>,
}

/// Problems reported at most (the rest are counted).
pub const MAX_PROBLEMS: usize = 20;

impl AgencyFileError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        "ekey.agency.file"
    }

    /// The problems, one per line, for the administrator.
    pub fn message(&self, lang: Lang) -> String {
        let head = lang.pick(
            "发证机构文件未载入（没有任何更改）：",
            "The agencies file was not loaded (nothing changed):",
        );
        let lines: Vec<String> = self
            .problems
            .iter()
            .map(|p| {
                let text = lang.pick(&p.zh, &p.en);
                match (p.line, lang) {
                    (0, _) => text.to_string(),
                    (n, Lang::Zh) => format!("第 {n} 行：{text}"),
                    (n, Lang::En) => format!("line {n}: {text}"),
                }
            })
            .collect();
        format!("{head}\n{}", lines.join("\n"))
    }
}

fn problem(line: usize, zh: impl Into<String>, en: impl Into<String>) -> Problem {
    Problem {
        line,
        zh: zh.into(),
        en: en.into(),
    }
}

/// Whether `code` may have an agency: one of the 31 provinces or an [`EXTRA_AGENCIES`] area.
pub fn is_agency_code(code: &str) -> bool {
    province::by_code(code).is_some() || EXTRA_AGENCIES.iter().any(|(c, _, _)| *c == code)
}

/// Splits CSV text into records of fields (RFC 4180: quotes, doubled quotes, CRLF or LF),
/// each with the line it starts on. `Err(line)` for an unterminated quote.
fn records(text: &str) -> Result<Vec<(usize, Vec<String>)>, usize> {
    let mut out = Vec::new();
    let mut fields = Vec::new();
    let mut field = String::new();
    let (mut line, mut start) = (1usize, 1usize);
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.trim().is_empty() => {
                field.clear();
                quoted = true;
            }
            ',' => fields.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                fields.push(std::mem::take(&mut field));
                out.push((start, std::mem::take(&mut fields)));
                line += 1;
                start = line;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(start);
    }
    if !field.is_empty() || !fields.is_empty() {
        fields.push(field);
        out.push((start, fields));
    }
    Ok(out)
}

/// Checks one text field: trimmed, no control characters, at most `max` characters.
fn field(
    problems: &mut Vec<Problem>,
    line: usize,
    value: &str,
    (zh, en): (&str, &str),
    max: usize,
) -> String {
    let v = value.trim().to_string();
    if v.chars().any(char::is_control) {
        problems.push(problem(
            line,
            format!("{zh}含有控制字符"),
            format!("{en} holds a control character"),
        ));
    } else if v.chars().count() > max {
        problems.push(problem(
            line,
            format!("{zh}最多 {max} 个字"),
            format!("{en}: at most {max} characters"),
        ));
    }
    v
}

/// Parses and checks the whole file. Returns the rows in file order, or every problem.
pub fn parse(text: &str) -> Result<Vec<AgencyRow>, AgencyFileError> {
    let fail = |problems: Vec<Problem>| Err(AgencyFileError { problems });
    if text.len() > MAX_BYTES {
        return fail(vec![problem(
            0,
            format!("文件过大：最多 {} KB", MAX_BYTES / 1024),
            format!("The file is too large: at most {} KB", MAX_BYTES / 1024),
        )]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let records = match records(text) {
        Ok(r) => r,
        Err(line) => {
            return fail(vec![problem(
                line,
                "引号未闭合",
                "a quoted field is not closed",
            )]);
        }
    };
    let mut records = records
        .into_iter()
        .filter(|(_, f)| !(f.len() == 1 && f[0].trim().is_empty()));
    let header_ok = records
        .next()
        .is_some_and(|(_, f)| f.iter().map(|h| h.trim()).collect::<Vec<_>>().join(",") == HEADER);
    if !header_ok {
        return fail(vec![problem(
            1,
            format!("第一行应为表头 {HEADER}"),
            format!("the first line must be the header {HEADER}"),
        )]);
    }
    let mut problems = Vec::new();
    let mut rows = Vec::new();
    let mut seen = BTreeSet::new();
    for (line, f) in records {
        if f.len() != 7 {
            problems.push(problem(
                line,
                format!("应有 7 列，实有 {} 列", f.len()),
                format!("7 columns expected, {} found", f.len()),
            ));
            continue;
        }
        let p = &mut problems;
        let row = AgencyRow {
            province: f[0].trim().to_string(),
            name_zh: field(p, line, &f[1], ("机构中文名称", "name_zh"), 50),
            name_en: field(p, line, &f[2], ("机构英文名称", "name_en"), 120),
            address: field(p, line, &f[3], ("领取地址", "address"), 200),
            window: field(p, line, &f[4], ("窗口", "window"), 100),
            hours: field(p, line, &f[5], ("办公时间", "hours"), 200),
            hotline: field(p, line, &f[6], ("咨询电话", "hotline"), 40),
        };
        if !is_agency_code(&row.province) {
            problems.push(problem(
                line,
                format!(
                    "“{}”不是省级行政区、计划单列市或新疆生产建设兵团的代码",
                    row.province
                ),
                format!(
                    "\"{}\" is not the code of a province, a separately planned city or the XPCC",
                    row.province
                ),
            ));
        } else if !seen.insert(row.province.clone()) {
            problems.push(problem(
                line,
                format!("{} 重复出现", row.province),
                format!("{} appears twice", row.province),
            ));
        }
        if row.name_zh.is_empty() {
            problems.push(problem(line, "请填写机构中文名称", "name_zh is required"));
        }
        if row.address.is_empty()
            && !(row.window.is_empty() && row.hours.is_empty() && row.hotline.is_empty())
        {
            problems.push(problem(
                line,
                "填写窗口、办公时间或电话时须同时填写领取地址",
                "a window, hours or hotline needs the collection address too",
            ));
        }
        if !row
            .hotline
            .chars()
            .all(|c| c.is_ascii_digit() || " -+()、/".contains(c))
        {
            problems.push(problem(
                line,
                "咨询电话只能包含数字、空格和 - + ( ) 、 /",
                "the hotline may hold digits, spaces and - + ( ) 、 / only",
            ));
        }
        rows.push(row);
    }
    let missing: Vec<&str> = province::all()
        .iter()
        .filter(|p| !seen.contains(p.code))
        .map(|p| p.name_zh)
        .collect();
    if !missing.is_empty() {
        problems.push(problem(
            0,
            format!("缺少以下省级发证机构：{}", missing.join("、")),
            format!(
                "Missing provincial agencies: {}",
                province::all()
                    .iter()
                    .filter(|p| !seen.contains(p.code))
                    .map(|p| p.name_en)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
    }
    if problems.is_empty() {
        Ok(rows)
    } else {
        let more = problems.len().saturating_sub(MAX_PROBLEMS);
        problems.truncate(MAX_PROBLEMS);
        if more > 0 {
            problems.push(problem(
                0,
                format!("另有 {more} 处问题"),
                format!("and {more} more problems"),
            ));
        }
        fail(problems)
    }
}

/// The file as the defaults (or a store's rows) would be written: header and one line per
/// agency, every field quoted. `rows` are `[code, name_zh, name_en, address, window, hours,
/// hotline]`.
pub fn write<'a>(rows: impl IntoIterator<Item = [&'a str; 7]>) -> String {
    let mut out = format!("{HEADER}\n");
    for row in rows {
        let quoted: Vec<String> = row
            .iter()
            .map(|f| format!("\"{}\"", f.replace('"', "\"\"")))
            .collect();
        out.push_str(&quoted.join(","));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> String {
        write(province::agency_defaults().iter().map(|a| {
            [
                a.province_code,
                a.name_zh,
                a.name_en,
                a.address,
                a.window,
                a.hours,
                a.hotline,
            ]
        }))
    }

    #[test]
    fn the_defaults_round_trip() {
        let rows = parse(&defaults()).unwrap();
        assert_eq!(rows.len(), 31);
        let js = rows.iter().find(|r| r.province == "320000").unwrap();
        assert_eq!(js.address, "南京市汉中门大街145号");
        assert_eq!(js.hotline, "025-83666306");
        // With a byte-order mark, CRLF and an extra agency of a separately planned city.
        let text = format!(
            "\u{feff}{}\"330200\",\"宁波市商务局\",\"Ningbo Municipal Commerce Bureau\",\"宁波市宁穿路1901号\",\"\",\"\",\"\"\n",
            defaults()
        )
        .replace('\n', "\r\n");
        let rows = parse(&text).unwrap();
        assert_eq!(rows.len(), 32);
        assert_eq!(rows[31].name_zh, "宁波市商务局");
        assert!(is_agency_code("660000") && !is_agency_code("320100"));
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let mut text = defaults();
        text.push_str("999999,某机构,X,,,,\n");
        text.push_str("320000,江苏省商务厅,Jiangsu,地址,窗口,,abc\n");
        text.push_str("440300,深圳市商务局,Shenzhen,,A1 窗口,,\n");
        text.push_str("440300,,Shenzhen,,,,\n");
        text.push_str("short,row\n");
        let e = parse(&text).unwrap_err();
        let zh = e.message(Lang::Zh);
        assert!(zh.contains("第 33 行：“999999”不是"), "{zh}");
        assert!(zh.contains("第 34 行：320000 重复出现"), "{zh}");
        assert!(zh.contains("第 34 行：咨询电话只能"), "{zh}");
        assert!(zh.contains("第 35 行：填写窗口"), "{zh}");
        assert!(zh.contains("第 36 行：440300 重复出现"), "{zh}");
        assert!(zh.contains("第 36 行：请填写机构中文名称"), "{zh}");
        assert!(zh.contains("第 37 行：应有 7 列"), "{zh}");
        assert!(e.message(Lang::En).contains("line 33: \"999999\""));
        assert_eq!(e.code(), "ekey.agency.file");
        // A province left out, a wrong header, an open quote.
        let without_beijing: String = defaults()
            .lines()
            .filter(|l| !l.starts_with("\"110000\""))
            .map(|l| format!("{l}\n"))
            .collect();
        let e = parse(&without_beijing).unwrap_err();
        assert!(e.message(Lang::Zh).contains("缺少以下省级发证机构：北京市"));
        assert!(
            parse("code,name\n")
                .unwrap_err()
                .message(Lang::Zh)
                .contains("第一行应为表头")
        );
        let open = format!("{}\"110000,x\n", defaults());
        assert!(
            parse(&open)
                .unwrap_err()
                .message(Lang::Zh)
                .contains("引号未闭合")
        );
    }
}
