//! Flow-log pipeline: enrichment, line formats, rotating file sink, CloudWatch shipper, loss accounting, metrics.
