-- 0004: how each segment's and word's time was obtained (bridge/core/types.py Timing).
--
-- 'step-clock': the 80 ms model step that carried the text (vLLM realtime), exact to 80 ms;
-- 'server': a span the ASR server stated (OpenAI transcription dialect), words placed inside it by
-- character count; 'arrival': no stated time, the speech in the audio committed as one turn.
-- Every row written before this migration came from the step clock, so that is the default.
-- No CHECK: like the other enum columns, the code validates (a new value needs no table rebuild).

ALTER TABLE segments ADD COLUMN timing TEXT NOT NULL DEFAULT 'step-clock';

ALTER TABLE words ADD COLUMN timing TEXT NOT NULL DEFAULT 'step-clock';
