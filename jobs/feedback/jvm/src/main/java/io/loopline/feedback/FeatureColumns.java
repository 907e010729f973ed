package io.loopline.feedback;

/** Feature names per kind and type, as feature_repo/names.py spells them. */
final class FeatureColumns {
    static final String[] USER_LONGS = {
        "user_impressions_1h", "user_clicks_1h", "user_purchases_1h",
        "user_impressions_24h", "user_clicks_24h", "user_purchases_24h"};
    static final String[] USER_DOUBLES = {"user_revenue_1h", "user_revenue_24h"};
    static final String USER_TEXT = "user_last_clicked";
    static final String[] ITEM_LONGS = {
        "item_impressions_1h", "item_clicks_1h", "item_add_to_cart_1h", "item_purchases_1h",
        "item_impressions_24h", "item_clicks_24h", "item_add_to_cart_24h", "item_purchases_24h"};
    static final String[] ITEM_DOUBLES = {
        "item_ctr_1h", "item_purchase_rate_1h", "item_debiased_ctr_1h",
        "item_ctr_24h", "item_purchase_rate_24h", "item_debiased_ctr_24h"};

    private FeatureColumns() {}

    static String[] longs(byte kind) {
        return kind == FeatureDelta.USER ? USER_LONGS : ITEM_LONGS;
    }

    static String[] doubles(byte kind) {
        return kind == FeatureDelta.USER ? USER_DOUBLES : ITEM_DOUBLES;
    }
}
