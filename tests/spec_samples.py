"""Response bodies quoted from the spec, shared by the tests that read them."""

GETHBINFO_RECEIVED = b"""<xml>
<return_code><![CDATA[SUCCESS]]></return_code>
<return_msg><![CDATA[OK]]></return_msg>
<result_code><![CDATA[SUCCESS]]></result_code>
<err_code><![CDATA[SUCCESS]]></err_code>
<err_code_des><![CDATA[OK]]></err_code_des>
<mch_billno><![CDATA[1473919402201801230145075410]]></mch_billno>
<mch_id><![CDATA[1497236182]]></mch_id>
<detail_id><![CDATA[1000041701201801233000139830103]]></detail_id>
<status><![CDATA[RECEIVED]]></status>
<send_type><![CDATA[API]]></send_type>
<hb_type><![CDATA[NORMAL]]></hb_type>
<total_num>1</total_num>
<total_amount>100</total_amount>
<send_time><![CDATA[2018-01-23 13:45:08]]></send_time>
<hblist>
<hbinfo>
<openid><![CDATA[o3yHF0uHuckI3yE6lwWiFQBQdVDI]]></openid>
<amount>100</amount>
<rcv_time><![CDATA[2018-01-23 13:45:31]]></rcv_time>
</hbinfo>
</hblist>
</xml>"""
"""gethbinfo of a received normal packet (docs/protocol.md §3.5, live shape of 2018)."""
