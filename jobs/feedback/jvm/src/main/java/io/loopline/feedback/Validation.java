package io.loopline.feedback;

import java.util.Arrays;
import java.util.HashSet;
import java.util.Set;

/** Semantic checks Avro cannot express (as jobs/transforms/decode.py): the reason, or null. */
final class Validation {
    static final Set<String> INTERACTION_TYPES = Set.of("view", "click", "add_to_cart", "purchase");

    private Validation() {}

    static String serving(InputEvent e) {
        if (empty(e.requestId)) return "ServingEvent.request_id must be non-empty";
        if (empty(e.userId)) return "ServingEvent.user_id must be non-empty";
        if (empty(e.modelVersion)) return "ServingEvent.model_version must be non-empty";
        int n = e.itemIds.length;
        if (n == 0) return "ServingEvent.slate must hold at least one item";
        Set<Integer> positions = new HashSet<>();
        Set<String> items = new HashSet<>();
        int min = Integer.MAX_VALUE;
        for (int i = 0; i < n; i++) {
            positions.add(e.positions[i]);
            items.add(e.itemIds[i]);
            min = Math.min(min, e.positions[i]);
        }
        if (positions.size() != n || min < 0) {
            return "ServingEvent.slate positions must be distinct and >= 0, got " + Arrays.toString(e.positions);
        }
        if (items.size() != n) return "ServingEvent.slate lists an item more than once";
        for (int i = 0; i < n; i++) {
            double p = e.propensities[i];
            if (!(Double.isFinite(p) && p > 0.0 && p <= 1.0)) {
                return "propensity of " + e.itemIds[i] + " must be in (0, 1], got " + p;
            }
            if (!Double.isFinite(e.scores[i])) {
                return "score of " + e.itemIds[i] + " must be finite, got " + e.scores[i];
            }
        }
        return null;
    }

    static String interaction(InputEvent e) {
        if (!INTERACTION_TYPES.contains(e.type)) {
            return "InteractionEvent.type must be one of (view, click, add_to_cart, purchase), got '" + e.type + "'";
        }
        if (empty(e.eventId)) return "InteractionEvent.event_id must be non-empty";
        if (empty(e.userId)) return "InteractionEvent.user_id must be non-empty";
        if (empty(e.itemId)) return "InteractionEvent.item_id must be non-empty";
        if (!(Double.isFinite(e.revenue) && e.revenue >= 0)) {
            return "InteractionEvent.revenue must be a finite number >= 0, got " + e.revenue;
        }
        if (e.revenue > 0 && !"purchase".equals(e.type)) {
            return "InteractionEvent.revenue is only for purchases, got " + e.revenue + " on a " + e.type;
        }
        if (e.dwellMs != null && e.dwellMs < 0) return "InteractionEvent.dwell_ms must be >= 0, got " + e.dwellMs;
        if (e.position != null && e.position < 0) return "InteractionEvent.position must be >= 0, got " + e.position;
        return null;
    }

    static String featureLog(InputEvent e) {
        if (empty(e.requestId)) return "FeatureLog.request_id must be non-empty";
        double rate = e.log.sampleRate;
        if (!(rate > 0.0 && rate <= 1.0)) return "FeatureLog.sample_rate must be in (0, 1], got " + rate;
        return null;
    }

    private static boolean empty(String s) {
        return s == null || s.isEmpty();
    }
}
