"""WeChat Pay API v3 channel (Native / QR pay) through the `wechatpayv3` SDK in public-key mode."""
