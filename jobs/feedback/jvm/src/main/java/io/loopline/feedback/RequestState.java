package io.loopline.feedback;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/** The label join's state for one request id (or one organic event id). */
public class RequestState {
    public InputEvent serving;
    public Map<String, Outcome> outcomes = new HashMap<>();
    public List<InputEvent> pending = new ArrayList<>();
    public Set<String> seenEventIds = new HashSet<>();
    /** The request's first FeatureLog, until the request closes (null: none, or already used). */
    public InputEvent featureLog;
    /** A FeatureLog was received (joined, waiting or unmatched): another one is a duplicate. */
    public boolean featureLogSeen;
    public Long closedAt;

    public RequestState() {}

    boolean empty() {
        return serving == null && pending.isEmpty() && closedAt == null && featureLog == null;
    }

    /** What the interactions joined to one slate item amount to. */
    public static class Outcome {
        public boolean clicked;
        public boolean addedToCart;
        public boolean purchased;
        public double revenue;
        public long dwellMs;
        public int interactions;
        /** The joined interactions' coordinates ({@link SourceRefs}). */
        public long[] refs = new long[0];

        public Outcome() {}

        void add(InputEvent e, int topic) {
            interactions++;
            refs = SourceRefs.append(refs, topic, e.partition, e.offset);
            switch (e.type) {
                case "click": clicked = true; break;
                case "add_to_cart": addedToCart = true; break;
                case "purchase": purchased = true; revenue += e.revenue; break;
                case "view": dwellMs += e.dwellMs == null ? 0 : e.dwellMs; break;
                default: break;
            }
        }
    }
}
