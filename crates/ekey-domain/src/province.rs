//! The 31 provincial-level divisions of mainland China (GB/T 2260 codes) and, for each, the
//! default data of the commerce department that issues electronic keys there. Only what the
//! procedure states is filled in: the departments' names, and Jiangsu's collection address,
//! window and hotline. Everything else (other addresses, every agency's opening hours) is
//! empty until the platform administrator publishes it; pages then say that the agency's
//! details are not yet published instead of showing invented ones.

/// A provincial-level division (province, autonomous region or municipality).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Province {
    /// GB/T 2260 code, six digits ending in `0000`, e.g. `320000`.
    pub code: &'static str,
    /// Chinese name, e.g. `江苏省`.
    pub name_zh: &'static str,
    /// English name, e.g. `Jiangsu`.
    pub name_en: &'static str,
}

/// Default data of a province's issuing agency (the provincial commerce department).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AgencyDefaults {
    /// The province it serves (GB/T 2260 code).
    pub province_code: &'static str,
    /// Official Chinese name of the department.
    pub name_zh: &'static str,
    /// English name of the department.
    pub name_en: &'static str,
    /// Where keys are collected; empty when not known.
    pub address: &'static str,
    /// The service window; empty when not known.
    pub window: &'static str,
    /// Opening hours; empty when not known.
    pub hours: &'static str,
    /// Telephone hotline; empty when not known.
    pub hotline: &'static str,
}

const fn p(code: &'static str, name_zh: &'static str, name_en: &'static str) -> Province {
    Province {
        code,
        name_zh,
        name_en,
    }
}

static PROVINCES: [Province; 31] = [
    p("110000", "北京市", "Beijing"),
    p("120000", "天津市", "Tianjin"),
    p("130000", "河北省", "Hebei"),
    p("140000", "山西省", "Shanxi"),
    p("150000", "内蒙古自治区", "Inner Mongolia"),
    p("210000", "辽宁省", "Liaoning"),
    p("220000", "吉林省", "Jilin"),
    p("230000", "黑龙江省", "Heilongjiang"),
    p("310000", "上海市", "Shanghai"),
    p("320000", "江苏省", "Jiangsu"),
    p("330000", "浙江省", "Zhejiang"),
    p("340000", "安徽省", "Anhui"),
    p("350000", "福建省", "Fujian"),
    p("360000", "江西省", "Jiangxi"),
    p("370000", "山东省", "Shandong"),
    p("410000", "河南省", "Henan"),
    p("420000", "湖北省", "Hubei"),
    p("430000", "湖南省", "Hunan"),
    p("440000", "广东省", "Guangdong"),
    p("450000", "广西壮族自治区", "Guangxi"),
    p("460000", "海南省", "Hainan"),
    p("500000", "重庆市", "Chongqing"),
    p("510000", "四川省", "Sichuan"),
    p("520000", "贵州省", "Guizhou"),
    p("530000", "云南省", "Yunnan"),
    p("540000", "西藏自治区", "Xizang (Tibet)"),
    p("610000", "陕西省", "Shaanxi"),
    p("620000", "甘肃省", "Gansu"),
    p("630000", "青海省", "Qinghai"),
    p("640000", "宁夏回族自治区", "Ningxia"),
    p("650000", "新疆维吾尔自治区", "Xinjiang"),
];

/// The 31 provincial-level divisions, in GB/T 2260 code order.
pub fn all() -> &'static [Province] {
    &PROVINCES
}

/// The division with this GB/T 2260 code (surrounding blanks ignored).
pub fn by_code(code: &str) -> Option<&'static Province> {
    let code = code.trim();
    PROVINCES.iter().find(|p| p.code == code)
}

/// An agency of which only the name is known. The city in `_seat` documents where the
/// department sits; it is not an address and is not shown as one.
const fn a(
    province_code: &'static str,
    name_zh: &'static str,
    name_en: &'static str,
    _seat: &'static str,
) -> AgencyDefaults {
    AgencyDefaults {
        province_code,
        name_zh,
        name_en,
        address: "",
        window: "",
        hours: "",
        hotline: "",
    }
}

static AGENCIES: [AgencyDefaults; 31] = [
    a(
        "110000",
        "北京市商务局",
        "Beijing Municipal Commerce Bureau",
        "北京市商务局（北京市）",
    ),
    a(
        "120000",
        "天津市商务局",
        "Tianjin Municipal Commerce Bureau",
        "天津市商务局（天津市）",
    ),
    a(
        "130000",
        "河北省商务厅",
        "Department of Commerce of Hebei Province",
        "河北省商务厅（石家庄市）",
    ),
    a(
        "140000",
        "山西省商务厅",
        "Department of Commerce of Shanxi Province",
        "山西省商务厅（太原市）",
    ),
    a(
        "150000",
        "内蒙古自治区商务厅",
        "Department of Commerce of Inner Mongolia Autonomous Region",
        "内蒙古自治区商务厅（呼和浩特市）",
    ),
    a(
        "210000",
        "辽宁省商务厅",
        "Department of Commerce of Liaoning Province",
        "辽宁省商务厅（沈阳市）",
    ),
    a(
        "220000",
        "吉林省商务厅",
        "Department of Commerce of Jilin Province",
        "吉林省商务厅（长春市）",
    ),
    a(
        "230000",
        "黑龙江省商务厅",
        "Department of Commerce of Heilongjiang Province",
        "黑龙江省商务厅（哈尔滨市）",
    ),
    a(
        "310000",
        "上海市商务委员会",
        "Shanghai Municipal Commission of Commerce",
        "上海市商务委员会（上海市）",
    ),
    AgencyDefaults {
        province_code: "320000",
        name_zh: "江苏省商务厅",
        name_en: "Department of Commerce of Jiangsu Province",
        // 申领流程: "南京市汉中门大街145号A18窗口领取 … 咨询电话025-83666306"; it names
        // no opening hours.
        address: "南京市汉中门大街145号",
        window: "A18 窗口",
        hours: "",
        hotline: "025-83666306",
    },
    a(
        "330000",
        "浙江省商务厅",
        "Department of Commerce of Zhejiang Province",
        "浙江省商务厅（杭州市）",
    ),
    a(
        "340000",
        "安徽省商务厅",
        "Department of Commerce of Anhui Province",
        "安徽省商务厅（合肥市）",
    ),
    a(
        "350000",
        "福建省商务厅",
        "Department of Commerce of Fujian Province",
        "福建省商务厅（福州市）",
    ),
    a(
        "360000",
        "江西省商务厅",
        "Department of Commerce of Jiangxi Province",
        "江西省商务厅（南昌市）",
    ),
    a(
        "370000",
        "山东省商务厅",
        "Department of Commerce of Shandong Province",
        "山东省商务厅（济南市）",
    ),
    a(
        "410000",
        "河南省商务厅",
        "Department of Commerce of Henan Province",
        "河南省商务厅（郑州市）",
    ),
    a(
        "420000",
        "湖北省商务厅",
        "Department of Commerce of Hubei Province",
        "湖北省商务厅（武汉市）",
    ),
    a(
        "430000",
        "湖南省商务厅",
        "Department of Commerce of Hunan Province",
        "湖南省商务厅（长沙市）",
    ),
    a(
        "440000",
        "广东省商务厅",
        "Department of Commerce of Guangdong Province",
        "广东省商务厅（广州市）",
    ),
    a(
        "450000",
        "广西壮族自治区商务厅",
        "Department of Commerce of Guangxi Zhuang Autonomous Region",
        "广西壮族自治区商务厅（南宁市）",
    ),
    a(
        "460000",
        "海南省商务厅",
        "Department of Commerce of Hainan Province",
        "海南省商务厅（海口市）",
    ),
    a(
        "500000",
        "重庆市商务委员会",
        "Chongqing Municipal Commission of Commerce",
        "重庆市商务委员会（重庆市）",
    ),
    a(
        "510000",
        "四川省商务厅",
        "Department of Commerce of Sichuan Province",
        "四川省商务厅（成都市）",
    ),
    a(
        "520000",
        "贵州省商务厅",
        "Department of Commerce of Guizhou Province",
        "贵州省商务厅（贵阳市）",
    ),
    a(
        "530000",
        "云南省商务厅",
        "Department of Commerce of Yunnan Province",
        "云南省商务厅（昆明市）",
    ),
    a(
        "540000",
        "西藏自治区商务厅",
        "Department of Commerce of Xizang Autonomous Region",
        "西藏自治区商务厅（拉萨市）",
    ),
    a(
        "610000",
        "陕西省商务厅",
        "Department of Commerce of Shaanxi Province",
        "陕西省商务厅（西安市）",
    ),
    a(
        "620000",
        "甘肃省商务厅",
        "Department of Commerce of Gansu Province",
        "甘肃省商务厅（兰州市）",
    ),
    a(
        "630000",
        "青海省商务厅",
        "Department of Commerce of Qinghai Province",
        "青海省商务厅（西宁市）",
    ),
    a(
        "640000",
        "宁夏回族自治区商务厅",
        "Department of Commerce of Ningxia Hui Autonomous Region",
        "宁夏回族自治区商务厅（银川市）",
    ),
    a(
        "650000",
        "新疆维吾尔自治区商务厅",
        "Department of Commerce of Xinjiang Uygur Autonomous Region",
        "新疆维吾尔自治区商务厅（乌鲁木齐市）",
    ),
];

/// The default issuing agency of each of the 31 divisions, in the order of [`all`].
pub fn agency_defaults() -> &'static [AgencyDefaults] {
    &AGENCIES
}

/// The default issuing agency of the division with this code.
pub fn agency_defaults_for(province_code: &str) -> Option<&'static AgencyDefaults> {
    let code = province_code.trim();
    AGENCIES.iter().find(|a| a.province_code == code)
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn thirty_one_unique_codes() {
        assert_eq!(all().len(), 31);
        let codes: HashSet<_> = all().iter().map(|p| p.code).collect();
        assert_eq!(codes.len(), 31);
        let names: HashSet<_> = all().iter().map(|p| p.name_zh).collect();
        assert_eq!(names.len(), 31);
        for p in all() {
            assert_eq!(p.code.len(), 6, "{}", p.code);
            assert!(p.code.bytes().all(|b| b.is_ascii_digit()), "{}", p.code);
            assert!(p.code.ends_with("0000"), "{}", p.code);
            assert!(!p.name_zh.is_empty() && !p.name_en.is_empty());
        }
        // Ascending order.
        assert!(all().windows(2).all(|w| w[0].code < w[1].code));
        assert_eq!(all()[0].name_zh, "北京市");
        assert_eq!(all()[30].code, "650000");
        assert_eq!(all()[30].name_zh, "新疆维吾尔自治区");
    }

    #[test]
    fn lookup() {
        assert_eq!(by_code("320000").unwrap().name_zh, "江苏省");
        assert_eq!(by_code(" 310000 ").unwrap().name_en, "Shanghai");
        assert_eq!(by_code("110000").unwrap().name_zh, "北京市");
        assert!(by_code("710000").is_none()); // Taiwan is not served here
        assert!(by_code("810000").is_none());
        assert!(by_code("320100").is_none());
        assert!(by_code("").is_none());
    }

    #[test]
    fn one_agency_per_province() {
        assert_eq!(agency_defaults().len(), 31);
        for (p, a) in all().iter().zip(agency_defaults()) {
            assert_eq!(p.code, a.province_code);
            assert!(
                a.name_zh.ends_with("商务厅")
                    || a.name_zh.ends_with("商务局")
                    || a.name_zh.ends_with("商务委员会")
            );
            // Nothing invented: no agency but Jiangsu has an address, window or hotline,
            // and none has opening hours.
            assert!(a.hours.is_empty(), "{}", a.name_zh);
            if p.code != "320000" {
                assert!(a.address.is_empty() && a.window.is_empty() && a.hotline.is_empty());
            }
            assert_eq!(agency_defaults_for(p.code), Some(a));
        }
        let names: HashSet<_> = agency_defaults().iter().map(|a| a.name_zh).collect();
        assert_eq!(names.len(), 31);
        assert_eq!(
            agency_defaults_for("110000").unwrap().name_zh,
            "北京市商务局"
        );
        assert_eq!(
            agency_defaults_for("310000").unwrap().name_zh,
            "上海市商务委员会"
        );
        assert!(agency_defaults_for("999999").is_none());
    }

    #[test]
    fn jiangsu_exact() {
        let js = agency_defaults_for("320000").unwrap();
        assert_eq!(js.name_zh, "江苏省商务厅");
        assert_eq!(js.address, "南京市汉中门大街145号");
        assert_eq!(js.window, "A18 窗口");
        assert_eq!(js.hotline, "025-83666306");
        assert_eq!(js.hours, "", "the procedure names no hours");
        // Only Jiangsu has a known hotline in the defaults.
        assert_eq!(
            agency_defaults()
                .iter()
                .filter(|a| !a.hotline.is_empty())
                .count(),
            1
        );
    }
}
