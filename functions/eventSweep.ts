// Timer: delivers the events a crashed, throttled or overloaded instance left in the outbox (shared/events/outbox.ts).
import { app } from '@azure/functions';

import { services } from '../shared/services';

app.timer('eventSweep', {
  schedule: '0 * * * * *',
  handler: async (_timer, context) => {
    const report = await (await services()).events.outbox.sweep();
    if (report.markers > 0) context.log(`event sweep: ${JSON.stringify(report)}`);
  },
});
