//! Pictures cannot hurt the reviewers: an image announcing more pixels than eKey handles is
//! refused at upload even when its file is small, the console shows previews the server
//! made at a safe size, and fitting photos under their limit runs a bounded number at a
//! time.

use reqwest::StatusCode;
use serde_json::json;

use crate::support::*;

fn png_of(width: u32, height: u32, mut pixels: impl FnMut(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let mut img = image::RgbImage::new(width, height);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb(pixels(x, y));
    }
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

async fn images_are_checked_and_previewed_at_a_safe_size(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let id = submitted_request(&s, &ent).await;
    let item = |name: &str| format!("/api/v1/requests/{id}/materials/{name}");

    // 12,001 pixels wide: a 20 KB file, refused by its header like a fitted one would be.
    let wide = png_of(12_001, 8, |_, _| [250, 250, 250]);
    assert!(wide.len() < 200 * 1024);
    let before = s.snapshot().await;
    let (status, v) = s
        .put_bytes(&item("id_card"), Some(&ent), "image/png", wide)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{v}");
    assert_eq!(v["code"], "ekey.media.too_many_pixels");
    assert!(v["message"].as_str().unwrap().contains("12001"), "{v}");
    assert_eq!(before, s.snapshot().await, "nothing stored");

    // A 4000×3000 scan under the size limit: stored as it is, previewed at 1600×1200.
    let big = png_of(4000, 3000, |x, y| [(x / 16) as u8, (y / 12) as u8, 200]);
    assert!(big.len() < 1024 * 1024, "{}", big.len());
    let (status, v) = s
        .put_bytes(
            &item("business_licence"),
            Some(&ent),
            "image/png",
            big.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let others: Vec<&str> = SIX
        .iter()
        .copied()
        .filter(|m| *m != "business_licence")
        .collect();
    upload_all(&s, &ent, &id, &others).await;
    let (status, v) = s
        .post(
            &format!("/api/v1/requests/{id}/confirm-upload"),
            Some(&ent),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{v}");

    let agency = s.login("agency-320000").await;
    let res = s
        .client
        .get(s.url(&format!("{}?preview=true", item("business_licence"))))
        .bearer_auth(&agency)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "image/jpeg");
    assert!(
        res.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("inline;")
    );
    let preview = res.bytes().await.unwrap();
    let img = image::load_from_memory(&preview).unwrap();
    assert_eq!((img.width(), img.height()), (1600, 1200));
    // The original is still there, as a download.
    let res = s
        .client
        .get(s.url(&item("business_licence")))
        .bearer_auth(&agency)
        .send()
        .await
        .unwrap();
    assert_eq!(res.bytes().await.unwrap().as_ref(), big.as_slice());

    // The console shows the server's previews, not the uploaded files.
    let page = s
        .client
        .get(s.url(&format!("/console/requests/{id}")))
        .header(
            "cookie",
            format!("{}={agency}", ekey_server::auth::SESSION_COOKIE),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&format!("{}?preview=true", item("business_licence"))));
    assert!(
        !page.contains("?inline=true\" alt="),
        "no picture shown as uploaded"
    );
    s.stop().await;
}
on_both_databases!(images_are_checked_and_previewed_at_a_safe_size);

/// Six photos fitted at once: all fitted, never more than `MEDIA_AT_ONCE` at a time.
async fn fitting_runs_a_bounded_number_at_a_time(db: Db) {
    let s = TestServer::start(db).await;
    let ent = s.login("demo@ekey.example").await;
    let id = submitted_request(&s, &ent).await;
    // Noise does not compress: about 1.7 MB of PNG, over the 1 MB limit.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let noisy = png_of(820, 700, |_, _| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let b = seed.to_le_bytes();
        [b[0], b[1], b[2]]
    });
    assert!(noisy.len() > 1024 * 1024);
    let mut uploads = tokio::task::JoinSet::new();
    for name in SIX {
        let request = s
            .client
            .put(s.url(&format!("/api/v1/requests/{id}/materials/{name}?fit=1")))
            .bearer_auth(&ent)
            .header("content-type", "image/png")
            .body(noisy.clone());
        uploads.spawn(async move {
            let res = request.send().await.unwrap();
            (res.status(), res.json::<serde_json::Value>().await.unwrap())
        });
    }
    while let Some(done) = uploads.join_next().await {
        let (status, v) = done.unwrap();
        assert_eq!(status, StatusCode::CREATED, "{v}");
        assert!(v["fitted"]["after"].as_u64().unwrap() <= 1024 * 1024, "{v}");
    }
    let peak = ekey_server::api::scans::media_jobs_peak();
    assert!(
        (1..=ekey_server::api::scans::MEDIA_AT_ONCE).contains(&peak),
        "{peak} picture jobs at once"
    );
    s.stop().await;
}
on_both_databases!(fitting_runs_a_bounded_number_at_a_time);
