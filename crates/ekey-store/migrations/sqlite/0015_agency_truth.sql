-- Agencies without invented data (issue 16, item 10). Earlier releases seeded every agency
-- but Jiangsu with the department's name and city as "address", a generic window and
-- opening hours nobody published, and Jiangsu with such hours. Rows still holding exactly
-- those seeded values are cleared, so pages say the details are not yet published; rows
-- an administrator changed are left alone.
UPDATE agencies SET address = '', window_name = '', hours = ''
 WHERE province <> '320000'
   AND window_name = '许可证业务窗口'
   AND hours = '工作日 9:00–12:00，13:30–17:00'
   AND hotline = ''
   AND address LIKE name_zh || '（%）';
UPDATE agencies SET hours = ''
 WHERE province = '320000' AND hours = '工作日 9:00–12:00，13:30–17:00';
