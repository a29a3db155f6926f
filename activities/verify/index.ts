export * from './activities';
export * from './checkers';
export * from './fsck';
export * from './record';
export * from './signature';
export * from './temp';
export * from './version-check';
