package daemon

import (
	"context"
	"time"

	"github.com/sesame-knock/sesame/core/engine"
	"github.com/sesame-knock/sesame/supervisor"
)

// engineService makes the matcher/executor for the first config (it opens
// the doors' one-time files); the supervisor runs it. Its stop releases
// the files, after the supervisor has stopped it.
func (d *daemon) engineService() hook {
	return hook{name: "engine", start: func(context.Context) error {
		eng, err := engine.New(d.config(), engine.Options{Grants: openCounter{g: d.grants, m: d.metrics, lat: d.lat}, Logger: d.log.Named("engine"),
			OnFilter: d.caps.setDoorFilter, SkipIPv6: d.opts.SkipIPv6, Now: d.deps.now})
		if err != nil {
			return err
		}
		d.eng = eng
		d.caps.eng = eng
		return nil
	}, stop: func(context.Context) error {
		d.eng.Close()
		return nil
	}}
}

// supervisorService runs the supervised components, the engine first
// (the captures join when they start). An escalation (a component keeps
// failing or hangs) is handed to Run, which stops the daemon. Its stop
// cancels every component and waits for them.
func (d *daemon) supervisorService() hook {
	var w worker
	return hook{name: "supervisor", start: func(ctx context.Context) error {
		d.sup = supervisor.New("sesamed", supervisor.Options{Logger: d.log.Named("supervisor")})
		d.sup.Add("engine", 5*time.Second, supervisor.ServiceFunc(func(ctx context.Context, beat *supervisor.Beater) error {
			return d.eng.Run(ctx, beat.Beat, time.Second)
		}))
		w.goRun(ctx, func(ctx context.Context) {
			if err := d.sup.Serve(ctx); err != nil && ctx.Err() == nil {
				d.failed <- err
			}
		})
		return nil
	}, stop: func(context.Context) error { w.stop(); return nil }}
}
