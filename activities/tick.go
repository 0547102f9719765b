package activities

import "time"

// tick calls fn every interval until done is closed or fn returns false.
func tick(done <-chan struct{}, interval time.Duration, fn func(now time.Time) bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			if !fn(now) {
				return
			}
		}
	}
}
