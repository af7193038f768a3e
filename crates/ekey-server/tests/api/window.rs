//! The agencies as the procedure knows them (issue 16, item 10): only Jiangsu's collection
//! address, window and hotline are known; every other agency says plainly that its details
//! are not yet published (no invented hours, no empty "咨询电话："), until the administrator
//! loads them, all agencies at once, from one CSV file: checked, all or nothing, audited,
//! over the API and the admin page, with the separately planned cities and the XPCC.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Row;

use crate::pages::PageClient;
use crate::support::*;

const UNPUBLISHED: &str = "该机构的领取地址、窗口和咨询电话尚未公布";

fn agency<'a>(list: &'a Value, code: &str) -> &'a Value {
    list.as_array()
        .unwrap()
        .iter()
        .find(|a| a["province"] == code)
        .unwrap_or_else(|| panic!("no agency {code} in {list}"))
}

/// The agencies file with every default, Beijing's details published, and Shenzhen added.
fn agencies_csv(beijing_hotline: &str) -> String {
    let mut out = format!("{}\r\n", ekey_domain::agency_file::HEADER);
    for a in ekey_domain::province::agency_defaults() {
        let (address, window, hours, hotline) = if a.province_code == "110000" {
            ("北京市东城区示例路 1 号", "3 号窗口", "", beijing_hotline)
        } else {
            (a.address, a.window, a.hours, a.hotline)
        };
        out.push_str(&format!(
            "{},{},\"{}\",{},{},{},{}\r\n",
            a.province_code, a.name_zh, a.name_en, address, window, hours, hotline
        ));
    }
    out.push_str("440300,深圳市商务局,Shenzhen Municipal Commerce Bureau,,,,\r\n");
    out
}

async fn put_csv(s: &TestServer, token: &str, csv: &str) -> (StatusCode, Value) {
    let res = s
        .client
        .put(s.url("/api/v1/admin/agencies"))
        .bearer_auth(token)
        .header("content-type", "text/csv")
        .body(csv.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status();
    (status, res.json().await.unwrap_or(Value::Null))
}

async fn load_file_audits(s: &TestServer) -> i64 {
    sqlx::query("SELECT COUNT(*) AS n FROM audit_log WHERE action = 'agency.load_file'")
        .fetch_one(s.raw().pool())
        .await
        .unwrap()
        .try_get::<i64, _>("n")
        .unwrap()
}

pub async fn agencies_show_only_what_is_known_until_the_administrator_loads_the_file(db: Db) {
    let s = TestServer::start(db).await;
    let (status, list) = s.get("/api/v1/agencies", None).await;
    assert_eq!(status, StatusCode::OK);
    let js = agency(&list, "320000");
    assert_eq!(js["address"], "南京市汉中门大街145号");
    assert_eq!(js["window"], "A18 窗口");
    assert_eq!(js["hotline"], "025-83666306");
    assert_eq!(js["hours"], "", "the procedure names no opening hours");
    for a in list.as_array().unwrap() {
        assert_eq!(a["hours"], "", "{a}");
        if a["province"] != "320000" {
            assert_eq!(
                (&a["address"], &a["window"], &a["hotline"]),
                (&Value::from(""), &Value::from(""), &Value::from("")),
                "{a}"
            );
        }
    }

    // Pages: a Beijing clerk's footer says the details are not yet published; a Jiangsu
    // enterprise's shows the address, window and hotline, and no invented hours.
    let beijing = PageClient::new(&s);
    beijing.login("agency-110000", PASSWORD).await;
    let page = beijing.get("/console/queue").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains(UNPUBLISHED), "{}", page.body);
    assert!(!page.body.contains("咨询电话：") && !page.body.contains("办公时间"));
    let jiangsu = PageClient::new(&s);
    jiangsu.login("demo@ekey.example", PASSWORD).await;
    let page = jiangsu.get("/portal").await;
    assert!(
        page.body.contains("南京市汉中门大街145号 A18 窗口"),
        "{}",
        page.body
    );
    assert!(page.body.contains("025-83666306"));
    assert!(!page.body.contains("办公时间") && !page.body.contains(UNPUBLISHED));
    // The public list of agencies: "尚未公布", not an invented place.
    let result = PageClient::new(&s).get("/result").await;
    assert!(result.body.contains("尚未公布"));
    assert!(!result.body.contains("北京市商务局（北京市）"));

    // The administrator loads the file: one bad line refuses all of it, changing nothing.
    let admin = s.login("admin").await;
    let before = s.snapshot().await;
    let (status, v) = put_csv(&s, &admin, &agencies_csv("电话待定")).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.agency.file");
    assert!(v["message"].as_str().unwrap().contains("第 2 行"), "{v}");
    assert_eq!(s.snapshot().await, before, "a refused file changes nothing");
    // Staff other than the administrator may not load it.
    let clerk = s.login("agency-320000").await;
    let (status, _) = put_csv(&s, &clerk, &agencies_csv("010-12345678")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, list) = put_csv(&s, &admin, &agencies_csv("010-12345678")).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let bj = agency(&list, "110000");
    assert_eq!(bj["address"], "北京市东城区示例路 1 号");
    assert_eq!(bj["hotline"], "010-12345678");
    assert_eq!(agency(&list, "440300")["name"], "深圳市商务局");
    assert_eq!(agency(&list, "320000")["hotline"], "025-83666306");
    assert_eq!(load_file_audits(&s).await, 1);
    assert!(s.verify_audit().await.first_broken.is_none());
    let page = beijing.get("/console/queue").await;
    assert!(
        page.body.contains("北京市东城区示例路 1 号 3 号窗口")
            && page.body.contains("010-12345678"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(UNPUBLISHED));

    // The admin page takes the same file (pasted or read from the chosen file).
    let p = PageClient::new(&s);
    p.login("admin", PASSWORD).await;
    let csrf = p.csrf("/console/admin").await;
    let a = p
        .post(
            "/console/admin/agencies",
            &[("csrf", &csrf), ("csv", &agencies_csv("010-87654321"))],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER, "{}", a.body);
    assert!(a.location.contains("done=agencies"), "{}", a.location);
    let (_, list) = s.get("/api/v1/agencies", None).await;
    assert_eq!(agency(&list, "110000")["hotline"], "010-87654321");
    assert_eq!(load_file_audits(&s).await, 2);
    let a = p
        .post(
            "/console/admin/agencies",
            &[("csrf", &csrf), ("csv", "province,name\n")],
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert!(a.location.contains("error="), "{}", a.location);
    assert_eq!(load_file_audits(&s).await, 2);
    s.stop().await;
}

on_both_databases!(agencies_show_only_what_is_known_until_the_administrator_loads_the_file);
