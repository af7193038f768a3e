//! Time to make each document with the fonts already loaded (the server loads them once at
//! start). `cargo bench -p ekey-docs`; the median of each is in
//! `$CARGO_TARGET_DIR/criterion/docs/<name>/new/estimates.json`.

use std::hint::black_box;

use chrono::NaiveDate;
use criterion::{Criterion, criterion_group, criterion_main};
use ekey_docs::{
    Fonts, Person, RequestDoc, application_form, cancellation_form, confirmation_letter,
    unlock_form,
};
use ekey_domain::request::{Kind, LicenceType};

fn sample(kind: Kind) -> RequestDoc {
    RequestDoc {
        number: "EK2026021200001".into(),
        kind,
        enterprise_name: "江苏鑫达国际贸易有限公司".into(),
        credit_code: "91320106MA1NXXXXXC".into(),
        address: "江苏省南京市建邺区江东中路108号万达广场C座2601室".into(),
        legal_representative: "张建国".into(),
        province_name: "江苏省".into(),
        agency_name: "江苏省商务厅".into(),
        licence_types: vec![LicenceType::ImportLicence, LicenceType::DualUse],
        login_name: Some("jsxd_trade01".into()),
        reason: Some("公司新设进口业务部，需为新增业务员单独配置电子钥匙。".into()),
        authorised_user: Person {
            name: "李晓明".into(),
            id_number: "11010519491231002X".into(),
            mobile: "13812345678".into(),
            email: "lixiaoming@jsxd-trade.com.cn".into(),
        },
        key_serial: Some("GFA2026000123".into()),
        key_lost: false,
        date: NaiveDate::from_ymd_opt(2026, 2, 12).unwrap(),
        provider_name: "国富安CA".into(),
    }
}

fn documents(c: &mut Criterion) {
    let system = Fonts::load(None).expect("fonts");
    let bundled = Fonts::bundled();
    let doc = sample(Kind::Additional);
    let unlock = sample(Kind::Unlock);
    let cancel = sample(Kind::Cancellation);
    let mut g = c.benchmark_group("docs");
    g.sample_size(50);
    for (tag, fonts) in [("system", &system), ("bundled", &bundled)] {
        g.bench_function(format!("application_form/{tag}"), |b| {
            b.iter(|| application_form(fonts, black_box(&doc)).unwrap())
        });
        g.bench_function(format!("confirmation_letter/{tag}"), |b| {
            b.iter(|| confirmation_letter(fonts, black_box(&doc)).unwrap())
        });
        g.bench_function(format!("unlock_form/{tag}"), |b| {
            b.iter(|| unlock_form(fonts, black_box(&unlock)).unwrap())
        });
        g.bench_function(format!("cancellation_form/{tag}"), |b| {
            b.iter(|| cancellation_form(fonts, Some(black_box(&cancel))).unwrap())
        });
        g.bench_function(format!("cancellation_form_blank/{tag}"), |b| {
            b.iter(|| cancellation_form(fonts, None).unwrap())
        });
    }
    g.finish();
    c.bench_function("fonts_load_system", |b| {
        b.iter(|| Fonts::load(None).unwrap())
    });
}

criterion_group!(benches, documents);
criterion_main!(benches);
