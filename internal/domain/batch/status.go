package batch

// Status is the status of a run in dwh.etl_runs and in its result.
type Status string

// The statuses of a run.
const (
	StatusRunning      Status = "running"
	StatusLoadFailed   Status = "load_failed"   // parked: Load failed after its retries; waiting for retry-load or abandon
	StatusExportFailed Status = "export_failed" // parked: the export failed after its attempts; waiting for retry-export or abandon
	// StatusAwaitingApproval: parked before Load, its output breached the
	// data-quality gate; waiting for approve or reject.
	StatusAwaitingApproval Status = "awaiting_approval"
	StatusSucceeded        Status = "succeeded"
	// StatusRejected: an operator rejected the run at the gate; nothing
	// was loaded.
	StatusRejected  Status = "rejected"
	StatusFailed    Status = "failed"
	StatusAbandoned Status = "abandoned"
	// StatusTerminated: the workflow closed in Temporal (terminated, timed
	// out) without closing its run; the staging sweep records it.
	StatusTerminated Status = "terminated"
)

// OpenStatuses are the statuses of a run whose workflow has not closed
// its run row: it is going, parked, or gone without a word (which only
// Temporal can tell).
var OpenStatuses = []Status{StatusRunning, StatusLoadFailed, StatusExportFailed, StatusAwaitingApproval}

// Open reports whether s is one of OpenStatuses.
func (s Status) Open() bool {
	for _, o := range OpenStatuses {
		if s == o {
			return true
		}
	}
	return false
}
