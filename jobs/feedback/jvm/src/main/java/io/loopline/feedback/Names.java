package io.loopline.feedback;

/** Contract names shared with the Python side (schemas/codec.py, jobs/transforms/slices.py). */
final class Names {
    static final String SERVING_EVENT = "io.loopline.events.ServingEvent";
    static final String INTERACTION_EVENT = "io.loopline.events.InteractionEvent";
    static final String FEATURE_LOG = "io.loopline.events.FeatureLog";
    static final String LABELLED_IMPRESSION = "io.loopline.events.LabelledImpression";
    static final String DEAD_LETTER = "io.loopline.events.DeadLetter";
    static final String FEATURE_UPDATE = "io.loopline.events.FeatureUpdate";

    static final String LABELLED_DATASET = "labelled_impressions";
    static final String UNMATCHED_DATASET = "unmatched_interactions";
    static final String FEATURE_LOG_DATASET = "feature_log";

    static final String USER_ACTIVITY = "user_activity";
    static final String ITEM_PERFORMANCE = "item_performance";

    private Names() {}
}
