// The query every run answers (a backup, a restore, a cleanup, a volume's child workflow): what it is doing now.
import { defineQuery } from '@temporalio/workflow';
import type { RunProgress } from './types';

export const progressQuery = defineQuery<RunProgress>('progress');
