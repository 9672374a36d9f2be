//! CloudWatch Logs shipper: reads the flow-log files from a checkpoint and sends batches at the API limits.
